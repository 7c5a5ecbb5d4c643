-- No fact without the city version that was valid at its observation time (facts loaded within the test window).
select f.observation_id
from {{ ref('fct_weather_observations') }} as f
left join {{ ref('dim_city') }} as c
    on
        f.city_key = c.city_key
        and f.observed_at >= c.valid_from
        and f.observed_at < c.valid_to
where
    c.city_key is null
    and f.loaded_at > {{ test_window_start(ref('fct_weather_observations')) }}
