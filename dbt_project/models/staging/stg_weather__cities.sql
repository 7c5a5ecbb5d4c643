with source as (
    select * from {{ source('weather', 'cities') }}
)

select
    city_id,
    city_name,
    country as country_code,
    cast(latitude as numeric(9, 6)) as latitude,
    cast(longitude as numeric(9, 6)) as longitude,
    timezone,
    updated_at
from source
