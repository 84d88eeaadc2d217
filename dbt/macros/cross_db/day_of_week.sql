{#- 0 = sunday .. 6 = saturday on every adapter -#}
{% macro day_of_week(timestamp_expression) -%}
    {{ return(adapter.dispatch('day_of_week', 'seattle_crime')(timestamp_expression)) }}
{%- endmacro %}

{% macro default__day_of_week(timestamp_expression) -%}
    cast(extract(dow from {{ timestamp_expression }}) as integer)
{%- endmacro %}

{#- bigquery counts 1 = sunday .. 7 = saturday -#}
{% macro bigquery__day_of_week(timestamp_expression) -%}
    extract(dayofweek from {{ timestamp_expression }}) - 1
{%- endmacro %}
