{#- the publisher's placeholders for "no usable location"; compared after trim and upper -#}
{% macro clean_location_text(column_name) -%}
    case
        when
            upper(trim({{ column_name }}))
            in ('', '-', 'REDACTED', 'OOJ', 'UNKNOWN', 'UNKNOW')
            then null
        else upper(trim({{ column_name }}))
    end
{%- endmacro %}
