{{
    config(
        materialized='incremental',
        unique_key='city_key',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
    )
}}

-- Incremental with merge, never dropped and rebuilt: the facts' foreign keys reference this table, and a rebuild
-- (drop ... cascade) would silently drop those constraints.
-- One row per version of a city (SCD type 2, from the snapshot). The first version of each city is valid from
-- 1900 so that history replayed from before the first snapshot still finds its city.
with versions as (
    select
        *,
        row_number() over (partition by city_id order by dbt_valid_from) as version_number
    from {{ ref('snap_cities') }}
)

select
    {{ surrogate_key(['city_id', 'dbt_valid_from']) }} as city_key,
    city_id,
    city_name,
    country_code,
    latitude,
    longitude,
    timezone,
    version_number,
    case
        when version_number = 1 then cast('1900-01-01 00:00:00+00' as timestamptz)
        else dbt_valid_from
    end as valid_from,
    coalesce(dbt_valid_to, cast('9999-12-31 00:00:00+00' as timestamptz)) as valid_to,
    dbt_valid_to is null as is_current
from versions
