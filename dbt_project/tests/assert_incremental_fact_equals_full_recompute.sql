-- The incremental fact table must hold exactly the rows a full recompute over all of Silver gives.
with incremental as (
    select
        city_id,
        observation_hour,
        observed_at,
        temperature_c,
        precipitation_1h_mm,
        event_id
    from {{ ref('fct_weather_observations') }}
),

full_recompute as (
    select
        h.city_id,
        h.observation_hour,
        h.observed_at,
        h.temperature_c,
        h.precipitation_1h_mm,
        h.event_id
    from {{ ref('int_weather__observations_hourly') }} as h
    inner join {{ ref('dim_city') }} as c
        on h.city_id = c.city_id and h.observed_at >= c.valid_from and h.observed_at < c.valid_to
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
