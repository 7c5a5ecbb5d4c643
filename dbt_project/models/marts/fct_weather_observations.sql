{{
    config(
        materialized='incremental',
        unique_key='observation_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
        indexes=[
            {'columns': ['observation_id'], 'unique': True},
            {'columns': ['loaded_at']},
            {'columns': ['city_id', 'local_date']},
        ],
    )
}}

-- Hourly grain: the latest observation of each city and UTC hour. Incremental runs rebuild only the (city, hour)
-- pairs touched by rows Silver loaded within the lookback window, so late-arriving rows land correctly.
-- Each CTE over the staging view is referenced once, so PostgreSQL inlines it and filters the staging table
-- before the view's casts run (a CTE referenced twice is materialised: every row of history cast, every hour).
{% if is_incremental() %}
    with touched as (
        {{ touched_groups(
            ref('stg_weather__observations'),
            {'city_id': '{t}city_id', 'observation_hour': "date_trunc('hour', {t}observed_at)"}
        ) }}
    ),

    candidates as (
        select observations.*
        from {{ ref('stg_weather__observations') }} as observations
        inner join touched
            on
                observations.city_id = touched.city_id
                and date_trunc('hour', observations.observed_at) = touched.observation_hour
        where
            -- a plain range on a column of the table: evaluated in the scan, before any cast
            observations.observed_at >= (select min(t.observation_hour) from touched as t)
            and observations.observed_at < (select max(t.observation_hour) from touched as t) + interval '1 hour'
    ),
{% else %}
    with candidates as (
        select * from {{ ref('stg_weather__observations') }}
    ),
{% endif %}

hourly as (
    {{ latest_per_hour('candidates') }}
),

cities as (
    select * from {{ ref('dim_city') }}
)

select
    {{ surrogate_key(["'hour'", 'hourly.city_id', 'hourly.observation_hour']) }} as observation_id,
    cities.city_key,
    hourly.city_id,
    cast(to_char(hourly.observed_at at time zone cities.timezone, 'YYYYMMDD') as integer) as date_key,
    cast(hourly.observed_at at time zone cities.timezone as date) as local_date,
    cast(extract(hour from hourly.observed_at at time zone cities.timezone) as integer) as hour_key,
    hourly.observation_hour,
    hourly.observed_at,
    hourly.temperature_c,
    hourly.feels_like_c,
    hourly.dew_point_c,
    hourly.pressure_hpa,
    hourly.humidity_pct,
    hourly.wind_speed_ms,
    hourly.wind_gust_ms,
    hourly.wind_direction_deg,
    hourly.cloud_cover_pct,
    hourly.rain_1h_mm,
    hourly.snow_1h_mm,
    hourly.precipitation_1h_mm,
    hourly.visibility_m,
    hourly.weather_code,
    hourly.weather_code_system,
    hourly.weather_condition,
    hourly.weather_condition_detail,
    hourly.source,
    hourly.event_id,
    hourly.loaded_at
from hourly
inner join cities
    on
        hourly.city_id = cities.city_id
        and hourly.observed_at >= cities.valid_from
        and hourly.observed_at < cities.valid_to
