-- The incremental fact table must hold exactly the rows a full recompute from Silver gives, for every (city, hour)
-- that Silver loaded within the test window: the part incremental runs rewrote lately. A full refresh (or
-- `full_tests: true`) compares every hour; the test suite also compares the whole table against a full refresh.
with recent_hours as (
    select distinct
        city_id,
        date_trunc('hour', observed_at) as observation_hour
    from {{ ref('stg_weather__observations') }}
    where loaded_at > {{ test_window_start(ref('stg_weather__observations')) }}
),

recent_observations as (
    select o.*
    from {{ ref('stg_weather__observations') }} as o
    inner join recent_hours as h
        on
            o.city_id = h.city_id
            and date_trunc('hour', o.observed_at) = h.observation_hour
    where
        o.observed_at >= (select min(r.observation_hour) from recent_hours as r)
        and o.observed_at < (select max(r.observation_hour) from recent_hours as r) + interval '1 hour'
),

recomputed as (
    {{ latest_per_hour('recent_observations') }}
),

full_recompute as (
    select
        r.city_id,
        r.observation_hour,
        r.observed_at,
        r.temperature_c,
        r.precipitation_1h_mm,
        r.event_id
    from recomputed as r
    inner join {{ ref('dim_city') }} as c
        on r.city_id = c.city_id and r.observed_at >= c.valid_from and r.observed_at < c.valid_to
),

incremental as (
    select
        f.city_id,
        f.observation_hour,
        f.observed_at,
        f.temperature_c,
        f.precipitation_1h_mm,
        f.event_id
    from {{ ref('fct_weather_observations') }} as f
    inner join recent_hours as h
        on f.city_id = h.city_id and f.observation_hour = h.observation_hour
    where
        f.observation_hour >= (select min(r.observation_hour) from recent_hours as r)
        and f.observation_hour <= (select max(r.observation_hour) from recent_hours as r)
),

only_incremental as (
    select
        city_id,
        observation_hour,
        event_id
    from (
        select * from incremental
        except
        select * from full_recompute
    ) as diff
),

only_full as (
    select
        city_id,
        observation_hour,
        event_id
    from (
        select * from full_recompute
        except
        select * from incremental
    ) as diff
)

select
    'only in incremental' as side,
    city_id,
    observation_hour,
    event_id
from only_incremental
union all
select
    'only in full recompute' as side,
    city_id,
    observation_hour,
    event_id
from only_full
