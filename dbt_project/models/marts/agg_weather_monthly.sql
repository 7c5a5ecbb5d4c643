{{
    config(
        materialized='incremental',
        unique_key='monthly_id',
        incremental_strategy='delete+insert',
        indexes=[{'columns': ['monthly_id'], 'unique': True}],
    )
}}

-- Monthly weather per city, rolled up from the daily mart (recomputes only months whose days changed).
{% if is_incremental() %}
    with touched as (
        select distinct
            city_id,
            cast(date_trunc('month', local_date) as date) as month_start
        from {{ ref('gold_weather_aggregates') }}
        where
            loaded_at > {{ incremental_cutoff() }}
    ),

    monthly_days as (
        select daily.*
        from {{ ref('gold_weather_aggregates') }} as daily
        inner join touched
            on
                daily.city_id = touched.city_id
                and cast(date_trunc('month', daily.local_date) as date) = touched.month_start
    ),
{% else %}
    with monthly_days as (
        select * from {{ ref('gold_weather_aggregates') }}
    ),
{% endif %}

aggregated as (
    select
        city_id,
        cast(date_trunc('month', local_date) as date) as month_start,
        min(min_temperature_c) as min_temperature_c,
        max(max_temperature_c) as max_temperature_c,
        round(avg(avg_temperature_c), 2) as avg_daily_temperature_c,
        sum(total_precipitation_mm) as total_precipitation_mm,
        max(max_wind_gust_ms) as max_wind_gust_ms,
        count(*) as days_observed,
        sum(observation_count) as observation_count,
        mode() within group (order by dominant_condition) as dominant_condition,
        max(loaded_at) as loaded_at
    from monthly_days
    group by city_id, cast(date_trunc('month', local_date) as date)
)

select
    {{ surrogate_key(['city_id', 'month_start']) }} as monthly_id,
    *
from aggregated
