with source as (
    select * from {{ source('weather', 'weather_observations') }}
)

select
    city_id,
    observed_at,
    cast(temperature_c as numeric(6, 2)) as temperature_c,
    cast(feels_like_c as numeric(6, 2)) as feels_like_c,
    cast(temp_min_c as numeric(6, 2)) as temp_min_c,
    cast(temp_max_c as numeric(6, 2)) as temp_max_c,
    cast(dew_point_c as numeric(6, 2)) as dew_point_c,
    cast(pressure_hpa as numeric(7, 2)) as pressure_hpa,
    cast(humidity_pct as numeric(5, 2)) as humidity_pct,
    cast(wind_speed_ms as numeric(6, 2)) as wind_speed_ms,
    cast(wind_gust_ms as numeric(6, 2)) as wind_gust_ms,
    cast(wind_deg as numeric(5, 1)) as wind_direction_deg,
    cast(clouds_pct as numeric(5, 2)) as cloud_cover_pct,
    cast(rain_1h_mm as numeric(7, 2)) as rain_1h_mm,
    cast(snow_1h_mm as numeric(7, 2)) as snow_1h_mm,
    cast(precipitation_1h_mm as numeric(7, 2)) as precipitation_1h_mm,
    cast(visibility_m as numeric(9, 1)) as visibility_m,
    weather_code,
    weather_code_system,
    weather_main as weather_condition,
    weather_description as weather_condition_detail,
    sunrise_at,
    sunset_at,
    tz_offset_s as utc_offset_seconds,
    source,
    event_id,
    ingested_at,
    loaded_at,
    silver_run_id
from source
