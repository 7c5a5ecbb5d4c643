{#- From observations (a relation or CTE name), keep the latest one of each city and UTC hour:
    the hourly grain of the facts. Shared by the incremental fact and its full-recompute twin. -#}
{% macro latest_per_hour(relation) %}
    select *
    from (
        select
            *,
            date_trunc('hour', observed_at) as observation_hour,
            row_number() over (
                partition by city_id, date_trunc('hour', observed_at)
                order by observed_at desc, ingested_at desc
            ) as rank_in_hour
        from {{ relation }}
    ) as ranked
    where rank_in_hour = 1
{% endmacro %}
