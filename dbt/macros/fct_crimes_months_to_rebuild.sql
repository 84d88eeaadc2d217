{#- the report months an incremental run of fct_crimes rewrites (bigquery, insert_overwrite),
    as common table expressions ending in months_to_rebuild (one column, report_month), to be
    placed in a with clause.

    a month is rewritten when the fact table was built from another fetch of it than the one
    in the lake (the manifest's fetched_at differs from the month_fetched_at it holds), or holds
    none of it. so is every month holding another copy of an offense found in such a month:
    staging keeps one copy per offense across partitions, so the month that loses it must be
    rewritten too. a month whose rewrite failed still differs on the next run, which redoes it.
    reads offense_id and report_month of the lake (stg_spd__crime_rows, every copy of an
    offense), the manifest (stg_spd__manifest) and two columns of the fact table. -#}
{% macro fct_crimes_months_to_rebuild(fact_relation) -%}
    lake_offenses as (

        select distinct
            report_month,
            offense_id

        from {{ ref('stg_spd__crime_rows') }}

    ),

    built_months as (

        select
            report_month,
            max(month_fetched_at) as month_fetched_at

        from {{ fact_relation }}

        group by report_month

    ),

    changed_months as (

        select distinct lake_offenses.report_month

        from lake_offenses

        left join {{ ref('stg_spd__manifest') }} as lake_manifest
            on lake_offenses.report_month = lake_manifest.report_month

        left join built_months
            on lake_offenses.report_month = built_months.report_month

        where
            built_months.report_month is null
            or lake_manifest.fetched_at is distinct from built_months.month_fetched_at

    ),

    months_sharing_an_offense as (

        select distinct other_copies.report_month

        from lake_offenses as changed_copies

        inner join changed_months
            on changed_copies.report_month = changed_months.report_month

        inner join lake_offenses as other_copies
            on changed_copies.offense_id = other_copies.offense_id

    ),

    months_to_rebuild as (

        select changed_months.report_month from changed_months
        union distinct
        select months_sharing_an_offense.report_month from months_sharing_an_offense

    )
{%- endmacro %}

{#- the pre-hook of an incremental fct_crimes run on bigquery. the 'unknown' report month has
    no report_month_start, so its rows sit in the __NULL__ partition, which dbt's dynamic
    insert_overwrite never replaces (it leaves null partition values out of the partitions it
    deletes, and would insert the month's rows again beside the old ones): when that month is
    to be rewritten, its old rows are deleted first. should the run then fail, the month is
    missing from the fact table, so the next run rewrites it. -#}
{% macro fct_crimes_delete_unknown_month(fact_relation) -%}
    delete from {{ fact_relation }}
    where
        report_month_start is null
        and report_month in (
            with
            {{ fct_crimes_months_to_rebuild(fact_relation) }}
            select months_to_rebuild.report_month from months_to_rebuild
        )
{%- endmacro %}
