{#- the one place for this model's materialization: partitioning and an incremental
    strategy for bigquery go here -#}
{{ config(materialized='table') }}

with

offenses as (

    select * from {{ ref('stg_spd__offenses') }}

),

final as (

    select
        -- ids
        offense_id,
        report_number,

        -- offense classification
        case
            when offense_category = 'VIOLENT CRIME' then 'violent'
            when offense_category = 'PROPERTY CRIME' then 'property'
            else 'other'
        end as crime_class,
        offense_category,
        crime_against_category,
        offense_group,
        offense_description,
        offense_code,
        (
            coalesce(crime_against_category = 'NOT_A_CRIME', false)
            or is_placeholder_offense_code
        ) as is_not_a_crime,
        shooting_type is not null as is_shooting,

        -- location
        precinct,
        sector,
        beat,
        neighborhood,
        reporting_area,
        block_address,
        latitude,
        longitude,

        -- timestamps and the report month
        offense_at,
        reported_at,
        report_month,
        {{ month_string_to_date('report_month') }} as report_month_start,
        source_updated_at

    from offenses

)

select * from final
