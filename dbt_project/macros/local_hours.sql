{#- Hours between two local midnights (dates) in an IANA zone: 24 for a day, 23 or 25 when the clocks change. -#}
{% macro local_hours(first_day, next_day, zone) -%}
    cast(
        extract(
            epoch from (cast({{ next_day }} as timestamp) at time zone {{ zone }})
            - (cast({{ first_day }} as timestamp) at time zone {{ zone }})
        ) / 3600 as integer
    )
{%- endmacro %}
