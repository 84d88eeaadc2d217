with

crimes as (

    select * from {{ ref('fct_crimes') }}

),

labelled_crimes as (

    select
        crime_class,
        coalesce(offense_group, 'UNKNOWN') as offense_group,
        coalesce(offense_description, 'UNKNOWN') as offense_description

    from crimes

    where not is_not_a_crime

),

offense_counts as (

    select
        crime_class,
        offense_group,
        offense_description,
        count(*) as offense_count

    from labelled_crimes

    group by crime_class, offense_group, offense_description

),

final as (

    select
        crime_class,
        offense_group,
        offense_description,
        offense_count,
        offense_count / sum(offense_count) over (partition by crime_class) as share_of_class

    from offense_counts

)

select * from final
