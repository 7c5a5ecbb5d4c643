{{
    config(
        materialized='incremental',
        unique_key='monthly_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
        indexes=[{'columns': ['monthly_id'], 'unique': True}],
    )
}}

-- Monthly weather per city and local calendar month, rolled up from the daily mart (recomputes only months whose
-- days changed). Completeness counts hours against the hours of the local month (DST included).
{% set city_month = {'city_id': '{t}city_id', 'month_start': "cast(date_trunc('month', {t}local_date) as date)"} %}
{% if is_incremental() %}
    with touched as (
        {{ touched_groups(ref('gold_weather_aggregates'), city_month) }}
    ),

    monthly_days as (
        {{ rows_of_touched_groups(ref('gold_weather_aggregates'), city_month, 'daily') }}
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
        avg(avg_temperature_c) as avg_daily_temperature_c,
        sum(total_precipitation_mm) as total_precipitation_mm,
        max(max_wind_gust_ms) as max_wind_gust_ms,
        count(*) as days_observed,
        count(*) filter (where is_complete) as complete_days,
        cast(sum(observation_count) as bigint) as observation_count,
        cast(sum(temperature_hours) as bigint) as temperature_hours,
        cast(sum(precipitation_hours) as bigint) as precipitation_hours,
        cast(sum(humidity_hours) as bigint) as humidity_hours,
        cast(sum(pressure_hours) as bigint) as pressure_hours,
        cast(sum(wind_hours) as bigint) as wind_hours,
        mode() within group (order by dominant_condition) as dominant_condition,
        max(loaded_at) as loaded_at
    from monthly_days
    group by city_id, cast(date_trunc('month', local_date) as date)
),

with_expected as (
    select
        aggregated.*,
        cast(extract(day from aggregated.month_start + interval '1 month' - interval '1 day') as integer)
            as days_in_month,
        {{ local_hours('aggregated.month_start', "aggregated.month_start + interval '1 month'", 'current_city.timezone') }}
            as expected_hours
    from aggregated
    inner join {{ ref('dim_city') }} as current_city
        on aggregated.city_id = current_city.city_id and current_city.is_current
)

select
    {{ surrogate_key(["'month'", 'city_id', 'month_start']) }} as monthly_id,
    city_id,
    month_start,
    min_temperature_c,
    max_temperature_c,
    avg_daily_temperature_c,
    total_precipitation_mm,
    max_wind_gust_ms,
    days_observed,
    observation_count,
    dominant_condition,
    loaded_at,
    days_in_month,
    complete_days,
    expected_hours,
    observation_count as observed_hours,
    temperature_hours,
    precipitation_hours,
    humidity_hours,
    pressure_hours,
    wind_hours,
    observation_count = expected_hours as is_complete
from with_expected
