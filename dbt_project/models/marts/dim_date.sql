{{
    config(
        materialized='incremental',
        unique_key='date_key',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
    )
}}

-- Incremental with merge, never dropped and rebuilt: the facts' foreign keys reference this table, and a rebuild
-- (drop ... cascade) would silently drop those constraints.
-- Calendar days 2000-2040 (a fixed range keeps the dimension independent of the data).
with days as (
    select cast(generated_day as date) as calendar_date
    from generate_series(
        cast('2000-01-01' as date), cast('2040-12-31' as date), interval '1 day'
    ) as generated_day
)

select
    cast(to_char(calendar_date, 'YYYYMMDD') as integer) as date_key,
    calendar_date,
    cast(extract(year from calendar_date) as integer) as year_number,
    cast(extract(quarter from calendar_date) as integer) as quarter_number,
    cast(extract(month from calendar_date) as integer) as month_number,
    trim(to_char(calendar_date, 'Month')) as month_name,
    cast(extract(day from calendar_date) as integer) as day_of_month,
    cast(extract(isodow from calendar_date) as integer) as iso_day_of_week,
    trim(to_char(calendar_date, 'Day')) as day_name,
    cast(extract(week from calendar_date) as integer) as iso_week,
    extract(isodow from calendar_date) in (6, 7) as is_weekend,
    cast(date_trunc('month', calendar_date) as date) as month_start
from days
