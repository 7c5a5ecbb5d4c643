{#- Tests on the tables that grow with history (Silver's observations, its staging view, the hourly facts) check the
    rows loaded within the test window - what an hourly run just wrote - instead of rescanning years of history every
    hour. Older rows were checked when they were loaded; keys stay unique because the tables enforce them (primary key,
    unique index). A full refresh (`weatherpipe gold --full-refresh`) or `--vars '{full_tests: true}'` tests every
    row. The tables concerned are listed in the var `windowed_test_relations`; each has a `loaded_at` column. -#}

{% macro test_window_start(relation) -%}
    {%- if flags.FULL_REFRESH or var('full_tests', false) -%}
        cast('-infinity' as timestamptz)
    {%- else -%}
        (
            select max(loaded_at) - interval '{{ var("test_window_hours") }} hours'
            from {{ relation }}
        )
    {%- endif -%}
{%- endmacro %}

{#- dbt wraps the model of every generic test in get_where_subquery (it applies the test's `where` config); this
    override adds the test window for the windowed tables. -#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- if config.get('where') -%}
        {%- do conditions.append('(' ~ config.get('where') ~ ')') -%}
    {%- endif -%}
    {%- if relation.identifier in var('windowed_test_relations', []) -%}
        {%- do conditions.append('loaded_at > ' ~ test_window_start(relation)) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') as dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
