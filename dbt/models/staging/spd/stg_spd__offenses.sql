with

crime_rows as (

    select * from {{ ref('stg_spd__crime_rows') }}

),

normalized as (

    select
        -- ids
        trim(offense_id) as offense_id,
        nullif(upper(trim(report_number)), '') as report_number,

        -- offense classification
        nullif(upper(trim(offense_category)), '') as offense_category,
        nullif(upper(trim(crime_against_category)), '') as crime_against_category,
        nullif(upper(trim(offense_group)), '') as offense_group,
        nullif(upper(trim(offense_code)), '') as offense_code,
        nullif(trim(offense_description), '') as offense_description,
        nullif(upper(trim(nibrs_group)), '') as nibrs_group,
        nullif(trim(shooting_type), '') as shooting_type,

        -- location
        {{ clean_location_text('precinct') }} as precinct,
        {{ clean_location_text('sector') }} as sector,
        {{ clean_location_text('beat') }} as beat,
        {{ clean_location_text('neighborhood') }} as neighborhood,
        {{ clean_location_text('reporting_area') }} as reporting_area,
        {{ clean_location_text('block_address') }} as block_address,
        {{ clean_location_text('census_block') }} as census_block,
        latitude,
        longitude,

        -- partition of the lake
        report_month,

        -- timestamps: offense and report times are pacific wall-clock time without offset
        offense_at,
        reported_at,
        source_updated_at

    from crime_rows

    -- a row without its key cannot be told apart from any other
    where offense_id is not null

),

cleaned as (

    select
        offense_id,
        report_number,
        offense_category,
        crime_against_category,
        offense_group,
        offense_code,
        offense_description,
        nibrs_group,
        shooting_type,
        coalesce(offense_code = '999', false) as is_placeholder_offense_code,
        precinct,
        {{ without_placeholder_code('sector') }} as sector,
        {{ without_placeholder_code('beat') }} as beat,
        neighborhood,
        reporting_area,
        block_address,
        census_block,
        -- a point outside the city is dropped whole: both coordinates together
        case when {{ within_seattle('latitude', 'longitude') }} then latitude end as latitude,
        case when {{ within_seattle('latitude', 'longitude') }} then longitude end as longitude,
        report_month,
        offense_at,
        reported_at,
        source_updated_at

    from normalized

),

versioned as (

    select
        *,
        -- the same offense can sit in two partitions until both months are reloaded:
        -- keep the newest version. rows tied on all three are the same socrata row version.
        row_number() over (
            partition by offense_id
            order by
                source_updated_at desc nulls last,
                reported_at desc nulls last,
                report_month desc
        ) as version_number

    from cleaned

),

final as (

    select
        offense_id,
        report_number,
        offense_category,
        crime_against_category,
        offense_group,
        offense_code,
        offense_description,
        nibrs_group,
        shooting_type,
        is_placeholder_offense_code,
        precinct,
        sector,
        beat,
        neighborhood,
        reporting_area,
        block_address,
        census_block,
        latitude,
        longitude,
        report_month,
        offense_at,
        reported_at,
        source_updated_at

    from versioned

    where version_number = 1

)

select * from final
