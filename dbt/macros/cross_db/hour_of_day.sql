{% macro hour_of_day(timestamp_expression) -%}
    {{ return(adapter.dispatch('hour_of_day', 'seattle_crime')(timestamp_expression)) }}
{%- endmacro %}

{% macro default__hour_of_day(timestamp_expression) -%}
    cast(extract(hour from {{ timestamp_expression }}) as integer)
{%- endmacro %}

{% macro bigquery__hour_of_day(timestamp_expression) -%}
    extract(hour from {{ timestamp_expression }})
{%- endmacro %}
