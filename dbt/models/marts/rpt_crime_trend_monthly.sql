with

crimes as (

    select * from {{ ref('fct_crimes') }}

),

report_months as (

    select distinct report_month_start

    from crimes

    where report_month_start is not null

),

crime_classes as (

    select 'violent' as crime_class
    union all
    select 'property' as crime_class
    union all
    select 'other' as crime_class

),

offense_counts as (

    select
        report_month_start,
        crime_class,
        count(*) as offense_count

    from crimes

    where
        not is_not_a_crime
        and report_month_start is not null

    group by report_month_start, crime_class

),

final as (

    select
        report_months.report_month_start,
        crime_classes.crime_class,
        coalesce(offense_counts.offense_count, 0) as offense_count

    from report_months

    cross join crime_classes

    left join offense_counts
        on
            report_months.report_month_start = offense_counts.report_month_start
            and crime_classes.crime_class = offense_counts.crime_class

)

select * from final
