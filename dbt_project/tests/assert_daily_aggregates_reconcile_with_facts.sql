-- Every daily row must equal what its hourly facts add up to (count, precipitation, extremes).
with from_facts as (
    select
        city_id,
        local_date,
        count(*) as observation_count,
        coalesce(sum(precipitation_1h_mm), 0) as total_precipitation_mm,
        min(temperature_c) as min_temperature_c,
        max(temperature_c) as max_temperature_c
    from {{ ref('fct_weather_observations') }}
    group by city_id, local_date
)

select
    f.city_id,
    f.local_date
from from_facts as f
full outer join {{ ref('gold_weather_aggregates') }} as d
    on f.city_id = d.city_id and f.local_date = d.local_date
where
    d.city_id is null
    or f.city_id is null
    or f.observation_count != d.observation_count
    or f.total_precipitation_mm != coalesce(d.total_precipitation_mm, 0)
    or f.min_temperature_c is distinct from d.min_temperature_c
    or f.max_temperature_c is distinct from d.max_temperature_c
