with

crimes as (

    select * from {{ ref('fct_crimes') }}

),

days_of_week as (

    {%- set day_names = [
        'Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday',
    ] %}
    {% for day_name in day_names %}
        select
            {{ loop.index0 }} as day_of_week,
            '{{ day_name }}' as day_name
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

hours_of_day as (

    {% for hour in range(24) %}
        select {{ hour }} as hour_of_day
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

crime_times as (

    -- the offense time when known, else the report time (both pacific wall-clock time)
    select
        crime_class,
        {{ day_of_week('coalesce(offense_at, reported_at)') }} as day_of_week,
        {{ hour_of_day('coalesce(offense_at, reported_at)') }} as hour_of_day

    from crimes

    where
        not is_not_a_crime
        and coalesce(offense_at, reported_at) is not null

),

offense_counts as (

    select
        day_of_week,
        hour_of_day,
        count(*) as offense_count,
        count(case when crime_class = 'violent' then 1 end) as violent_offense_count,
        count(case when crime_class = 'property' then 1 end) as property_offense_count

    from crime_times

    group by day_of_week, hour_of_day

),

final as (

    select
        days_of_week.day_of_week,
        days_of_week.day_name,
        hours_of_day.hour_of_day,
        coalesce(offense_counts.offense_count, 0) as offense_count,
        coalesce(offense_counts.violent_offense_count, 0) as violent_offense_count,
        coalesce(offense_counts.property_offense_count, 0) as property_offense_count

    from days_of_week

    cross join hours_of_day

    left join offense_counts
        on
            days_of_week.day_of_week = offense_counts.day_of_week
            and hours_of_day.hour_of_day = offense_counts.hour_of_day

)

select * from final
