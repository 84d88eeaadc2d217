-- every lake partition keeps all its offenses in fct_crimes, not-a-crime rows included.
-- an offense whose report time was revised can sit in two partitions until the old month is
-- fetched again; staging keeps one copy. so per report month the fact table must hold at least
-- the offenses found only in that partition and at most every distinct offense in it: equal
-- when no offense is shared. returns the report months outside those bounds.
with

lake_rows as (

    select
        report_month,
        offense_id

    from {{ source('spd', 'spd_crime') }}

    group by report_month, offense_id

),

partitions_per_offense as (

    select
        offense_id,
        count(*) as partition_count

    from lake_rows

    group by offense_id

),

lake_counts as (

    select
        lake_rows.report_month,
        count(*) as lake_offense_count,
        sum(
            case when partitions_per_offense.partition_count = 1 then 1 else 0 end
        ) as lake_only_here_count

    from lake_rows

    inner join partitions_per_offense
        on lake_rows.offense_id = partitions_per_offense.offense_id

    group by lake_rows.report_month

),

fct_counts as (

    select
        report_month,
        count(*) as fct_offense_count

    from {{ ref('fct_crimes') }}

    group by report_month

),

final as (

    select
        coalesce(lake_counts.report_month, fct_counts.report_month) as report_month,
        coalesce(lake_counts.lake_offense_count, 0) as lake_offense_count,
        coalesce(lake_counts.lake_only_here_count, 0) as lake_only_here_count,
        coalesce(fct_counts.fct_offense_count, 0) as fct_offense_count

    from lake_counts

    full outer join fct_counts
        on lake_counts.report_month = fct_counts.report_month

    where
        coalesce(fct_counts.fct_offense_count, 0)
        > coalesce(lake_counts.lake_offense_count, 0)
        or coalesce(fct_counts.fct_offense_count, 0)
        < coalesce(lake_counts.lake_only_here_count, 0)

)

select * from final
