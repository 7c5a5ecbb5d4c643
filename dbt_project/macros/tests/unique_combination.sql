{#- Generic test: the combination of `columns` is unique (dbt_utils' test of the same idea, written here
    because the package hub is unreachable). -#}
{% test unique_combination(model, columns) %}
    select
        {{ columns | join(', ') }},
        count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}
