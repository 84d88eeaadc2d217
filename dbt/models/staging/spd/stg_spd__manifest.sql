with

source as (

    select * from {{ source('spd', 'spd_crime_manifest') }}

),

final as (

    select
        -- ids
        report_month,

        -- measures
        row_count,

        -- timestamps: iso 8601 text, as the loader writes them
        fetched_at,
        source_updated_at

    from source

)

select * from final
