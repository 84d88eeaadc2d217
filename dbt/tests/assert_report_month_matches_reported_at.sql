-- the loader partitions by the month of report_date_time (pacific wall-clock time) and puts
-- rows without it under 'unknown': returns the offenses filed under another month
with

crimes as (

    select * from {{ ref('fct_crimes') }}

),

final as (

    select
        offense_id,
        report_month,
        reported_at

    from crimes

    where
        (reported_at is null and report_month != 'unknown')
        or (
            reported_at is not null
            and coalesce(report_month_start != {{ month_start('reported_at') }}, true)
        )

)

select * from final
