-- The incremental fact table must hold exactly the rows a full recompute from Silver gives, for every (city, hour)
-- that Silver loaded within the lookback window: the part an incremental run rewrote. (Checking the whole history
-- every hour would cost as much as a full refresh; `weatherpipe gold --full-refresh` and the test suite compare
-- the whole table.)
with observations as (
    select * from {{ ref('stg_weather__observations') }}
),

newest_load as (
    select max(loaded_at) as loaded_at from observations
),

recent_hours as (
    select distinct
        o.city_id,
        date_trunc('hour', o.observed_at) as observation_hour
    from observations as o
    cross join newest_load as n
    where o.loaded_at > n.loaded_at - interval '{{ var("lookback_hours") }} hours'
),

recent_observations as (
    select observations.*
    from observations
    inner join recent_hours
        on
            observations.city_id = recent_hours.city_id
            and date_trunc('hour', observations.observed_at) = recent_hours.observation_hour
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
