{#- fails for every combination of the given columns that occurs more than once -#}
{% test unique_combination(model, combination_of_columns) %}

with

duplicated_keys as (

    select
        {% for column_name in combination_of_columns %}
            {{ column_name }},
        {% endfor %}
        count(*) as row_count

    from {{ model }}

    group by {{ combination_of_columns | join(', ') }}

    having count(*) > 1

)

select * from duplicated_keys

{% endtest %}
