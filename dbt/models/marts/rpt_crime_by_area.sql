with

crimes as (

    select * from {{ ref('fct_crimes') }}

),

labelled_crimes as (

    -- a missing area stays in the report under an explicit label
    select
        coalesce(precinct, 'UNKNOWN') as precinct,
        coalesce(neighborhood, 'UNKNOWN') as neighborhood,
        coalesce(beat, 'UNKNOWN') as beat,
        crime_class

    from crimes

    where not is_not_a_crime

),

offense_counts as (

    select
        precinct,
        neighborhood,
        beat,
        crime_class,
        count(*) as offense_count

    from labelled_crimes

    group by precinct, neighborhood, beat, crime_class

),

final as (

    select
        precinct,
        neighborhood,
        beat,
        crime_class,
        offense_count,
        rank() over (
            partition by crime_class
            order by offense_count desc
        ) as rank_in_class

    from offense_counts

)

select * from final
