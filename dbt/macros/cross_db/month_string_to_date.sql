{#- 'YYYY-MM' to the first day of that month; anything else (the 'unknown' partition) to null -#}
{% macro month_string_to_date(month_string) -%}
    {{ return(adapter.dispatch('month_string_to_date', 'seattle_crime')(month_string)) }}
{%- endmacro %}

{% macro default__month_string_to_date(month_string) -%}
    try_cast({{ month_string }} || '-01' as date)
{%- endmacro %}

{% macro bigquery__month_string_to_date(month_string) -%}
    safe.parse_date('%Y-%m', {{ month_string }})
{%- endmacro %}
