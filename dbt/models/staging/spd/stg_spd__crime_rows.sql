with

source as (

    select * from {{ source('spd', 'spd_crime') }}

),

final as (

    -- clear names only: the values stay as published, so that what cleaning changes can be
    -- counted against them (rpt_data_quality). stg_spd__offenses cleans them.
    select
        -- ids
        offense_id,
        report_number,

        -- offense classification
        offense_category,
        nibrs_crime_against_category as crime_against_category,
        offense_sub_category as offense_group,
        nibrs_offense_code as offense_code,
        nibrs_offense_code_description as offense_description,
        nibrs_group_a_b as nibrs_group,
        shooting_type_group as shooting_type,

        -- location
        precinct,
        sector,
        beat,
        neighborhood,
        reporting_area,
        block_address,
        census_block_2020 as census_block,
        latitude,
        longitude,

        -- partition of the lake
        report_month,

        -- timestamps: offense and report times are pacific wall-clock time without offset
        offense_date as offense_at,
        report_date_time as reported_at,
        source_updated_at

    from source

)

select * from final
