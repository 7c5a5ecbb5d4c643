-- The hourly grain computed from scratch over all of Silver: what the incremental fact must equal.
with observations as (
    select * from {{ ref('stg_weather__observations') }}
)

{{ latest_per_hour('observations') }}
