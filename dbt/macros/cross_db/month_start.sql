{% macro month_start(timestamp_expression) -%}
    {{ return(adapter.dispatch('month_start', 'seattle_crime')(timestamp_expression)) }}
{%- endmacro %}

{% macro default__month_start(timestamp_expression) -%}
    cast(date_trunc('month', {{ timestamp_expression }}) as date)
{%- endmacro %}

{#- date() of a datetime keeps its wall-clock date; of a timestamp it takes the utc date -#}
{% macro bigquery__month_start(timestamp_expression) -%}
    date_trunc(date({{ timestamp_expression }}), month)
{%- endmacro %}
