-- Every daily row must equal what its hourly facts add up to (count, precipitation, extremes), for the days whose
-- facts or aggregates were loaded within the test window (every day on a full refresh or with `full_tests: true`).
with recent_days as (
    select
        city_id,
        local_date
    from {{ ref('fct_weather_observations') }}
    where loaded_at > {{ test_window_start(ref('fct_weather_observations')) }}
    union
    select
        city_id,
        local_date
    from {{ ref('gold_weather_aggregates') }}
    where loaded_at > {{ test_window_start(ref('gold_weather_aggregates')) }}
),

from_facts as (
    select
        f.city_id,
        f.local_date,
        count(*) as observation_count,
        coalesce(sum(f.precipitation_1h_mm), 0) as total_precipitation_mm,
        min(f.temperature_c) as min_temperature_c,
        max(f.temperature_c) as max_temperature_c
    from {{ ref('fct_weather_observations') }} as f
    inner join recent_days as r
        on f.city_id = r.city_id and f.local_date = r.local_date
    group by f.city_id, f.local_date
),

daily as (
    select d.*
    from {{ ref('gold_weather_aggregates') }} as d
    inner join recent_days as r
        on d.city_id = r.city_id and d.local_date = r.local_date
)

select
    f.city_id,
    f.local_date
from from_facts as f
full outer join daily as d
    on f.city_id = d.city_id and f.local_date = d.local_date
where
    d.city_id is null
    or f.city_id is null
    or f.observation_count != d.observation_count
    or f.total_precipitation_mm != coalesce(d.total_precipitation_mm, 0)
    or f.min_temperature_c is distinct from d.min_temperature_c
    or f.max_temperature_c is distinct from d.max_temperature_c
