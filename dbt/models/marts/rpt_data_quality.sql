-- one row per report month: per cleaning rule, how many raw values staging turned into null.
-- values that failed their type never reach here (the loader nulls and counts them); rows are
-- never dropped for bad values, except rows without an offense_id, counted as rows_without_key.
{#- each location column of staging and the name its count goes by: census_block is counted as
    census_block_2020, the publisher's name, which the loader's data-quality artifact shows -#}
{% set location_columns = [
    ('precinct', 'precinct'),
    ('sector', 'sector'),
    ('beat', 'beat'),
    ('neighborhood', 'neighborhood'),
    ('reporting_area', 'reporting_area'),
    ('block_address', 'block_address'),
    ('census_block', 'census_block_2020'),
] %}

with

crime_rows as (

    select * from {{ ref('stg_spd__crime_rows') }}

),

counts as (

    select
        report_month,
        count(*) as row_count,
        sum(case when offense_id is null then 1 else 0 end) as rows_without_key,
        {% for column_name, count_name in location_columns %}
            sum(
                case
                    when
                        {{ column_name }} is not null
                        and {{ clean_location_text(column_name) }} is null
                        then 1
                    else 0
                end
            ) as {{ count_name }}_sentinels,
        {% endfor %}
        sum(
            case
                when
                    {{ clean_location_text('sector') }} is not null
                    and {{ without_placeholder_code(clean_location_text('sector')) }} is null
                    then 1
                else 0
            end
        ) as sector_placeholders,
        sum(
            case
                when
                    {{ clean_location_text('beat') }} is not null
                    and {{ without_placeholder_code(clean_location_text('beat')) }} is null
                    then 1
                else 0
            end
        ) as beat_placeholders,
        sum(
            case
                when
                    latitude is not null
                    and longitude is not null
                    and not {{ within_seattle('latitude', 'longitude') }}
                    then 1
                else 0
            end
        ) as coordinates_outside_seattle

    from crime_rows

    group by report_month

),

final as (

    select * from counts

)

select * from final
