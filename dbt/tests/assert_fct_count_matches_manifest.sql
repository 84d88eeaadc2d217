-- after a successful load every partition holds exactly the source's rows, so the fact table's
-- count per report month equals the count the loader recorded in the manifest.
-- returns the report months where they differ.
with

manifest as (

    select
        report_month,
        row_count as manifest_row_count

    from {{ source('spd', 'spd_crime_manifest') }}

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
        coalesce(manifest.report_month, fct_counts.report_month) as report_month,
        coalesce(manifest.manifest_row_count, 0) as manifest_row_count,
        coalesce(fct_counts.fct_offense_count, 0) as fct_offense_count

    from manifest

    full outer join fct_counts
        on manifest.report_month = fct_counts.report_month

    where coalesce(manifest.manifest_row_count, 0) != coalesce(fct_counts.fct_offense_count, 0)

)

select * from final
