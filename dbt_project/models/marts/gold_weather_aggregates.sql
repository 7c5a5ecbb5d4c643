{{
    config(
        materialized='incremental',
        unique_key='daily_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
        indexes=[{'columns': ['daily_id'], 'unique': True}, {'columns': ['loaded_at']}],
    )
}}

-- Daily weather per city and local day: the table the original README points Power BI users to.
-- Incremental runs recompute only the (city, day) pairs whose facts changed within the lookback window.
-- Completeness: a local day has 24 hours (23 or 25 when the clocks change); each measure says how many of the
-- observed hours it was reported in, since averages and sums skip the hours it is missing.
{% set city_day = {'city_id': '{t}city_id', 'local_date': '{t}local_date'} %}
{% if is_incremental() %}
    with touched as (
        {{ touched_groups(ref('fct_weather_observations'), city_day) }}
    ),

    daily_facts as (
        {{ rows_of_touched_groups(ref('fct_weather_observations'), city_day, 'facts') }}
    ),
{% else %}
    with daily_facts as (
        select * from {{ ref('fct_weather_observations') }}
    ),
{% endif %}

aggregated as (
    select
        city_id,
        local_date,
        min(date_key) as date_key,
        min(temperature_c) as min_temperature_c,
        max(temperature_c) as max_temperature_c,
        avg(temperature_c) as avg_temperature_c,
        sum(precipitation_1h_mm) as total_precipitation_mm,
        avg(humidity_pct) as avg_humidity_pct,
        avg(pressure_hpa) as avg_pressure_hpa,
        max(wind_speed_ms) as max_wind_speed_ms,
        max(wind_gust_ms) as max_wind_gust_ms,
        count(*) as observation_count,
        count(temperature_c) as temperature_hours,
        count(precipitation_1h_mm) as precipitation_hours,
        count(humidity_pct) as humidity_hours,
        count(pressure_hpa) as pressure_hours,
        count(wind_speed_ms) as wind_hours,
        mode() within group (order by weather_condition) as dominant_condition,
        max(loaded_at) as loaded_at
    from daily_facts
    group by city_id, local_date
),

with_expected as (
    select
        aggregated.*,
        current_city.city_name,
        current_city.country_code,
        {{ local_hours('aggregated.local_date', 'aggregated.local_date + 1', 'current_city.timezone') }}
            as expected_hours
    from aggregated
    inner join {{ ref('dim_city') }} as current_city
        on aggregated.city_id = current_city.city_id and current_city.is_current
)

select
    {{ surrogate_key(["'day'", 'city_id', 'local_date']) }} as daily_id,
    city_id,
    local_date,
    date_key,
    min_temperature_c,
    max_temperature_c,
    avg_temperature_c,
    total_precipitation_mm,
    avg_humidity_pct,
    avg_pressure_hpa,
    max_wind_speed_ms,
    max_wind_gust_ms,
    observation_count,
    dominant_condition,
    loaded_at,
    city_name,
    country_code,
    expected_hours,
    observation_count as observed_hours,
    temperature_hours,
    precipitation_hours,
    humidity_hours,
    pressure_hours,
    wind_hours,
    observation_count = expected_hours as is_complete
from with_expected
