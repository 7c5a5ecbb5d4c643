{{
    config(
        materialized='incremental',
        unique_key='daily_id',
        incremental_strategy='delete+insert',
        indexes=[{'columns': ['daily_id'], 'unique': True}, {'columns': ['loaded_at']}],
    )
}}

-- Daily weather per city and local day: the table the original README points Power BI users to.
-- Incremental runs recompute only the (city, day) pairs whose facts changed within the lookback window.
{% if is_incremental() %}
    with touched as (
        select distinct
            city_id,
            local_date
        from {{ ref('fct_weather_observations') }}
        where
            loaded_at > {{ incremental_cutoff() }}
    ),

    daily_facts as (
        select facts.*
        from {{ ref('fct_weather_observations') }} as facts
        inner join touched
            on facts.city_id = touched.city_id and facts.local_date = touched.local_date
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
        round(avg(temperature_c), 2) as avg_temperature_c,
        sum(precipitation_1h_mm) as total_precipitation_mm,
        round(avg(humidity_pct), 2) as avg_humidity_pct,
        round(avg(pressure_hpa), 2) as avg_pressure_hpa,
        max(wind_speed_ms) as max_wind_speed_ms,
        max(wind_gust_ms) as max_wind_gust_ms,
        count(*) as observation_count,
        mode() within group (order by weather_condition) as dominant_condition,
        max(loaded_at) as loaded_at
    from daily_facts
    group by city_id, local_date
)

select
    {{ surrogate_key(['aggregated.city_id', 'aggregated.local_date']) }} as daily_id,
    aggregated.*,
    current_city.city_name,
    current_city.country_code
from aggregated
inner join {{ ref('dim_city') }} as current_city
    on aggregated.city_id = current_city.city_id and current_city.is_current
