{#- sector and beat codes starting with 99 are placeholders, not places -#}
{% macro without_placeholder_code(column_name) -%}
    case when {{ column_name }} not like '99%' then {{ column_name }} end
{%- endmacro %}

{#- a bounding box around the city: -1.0, 0 and geocoding misses fall outside it -#}
{% macro within_seattle(latitude, longitude) -%}
    (
        {{ latitude }} between 47.45 and 47.80
        and {{ longitude }} between -122.46 and -122.20
    )
{%- endmacro %}
