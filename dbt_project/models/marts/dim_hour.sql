{{
    config(
        materialized='incremental',
        unique_key='hour_key',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
    )
}}

-- Incremental with merge, never dropped and rebuilt: the facts' foreign keys reference this table, and a rebuild
-- (drop ... cascade) would silently drop those constraints.
-- Time of day (local hour) for slicing facts by part of the day.
select
    hour_of_day as hour_key,
    lpad(cast(hour_of_day as text), 2, '0') || ':00' as hour_label,
    case
        when hour_of_day < 6 then 'night'
        when hour_of_day < 12 then 'morning'
        when hour_of_day < 18 then 'afternoon'
        else 'evening'
    end as day_part
from generate_series(0, 23) as hour_of_day
