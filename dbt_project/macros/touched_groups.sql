{#- The incremental pattern, written once. ``keys`` maps each group column to its SQL over ``relation``'s columns,
    with ``{t}`` where the table alias goes (e.g. {'city_id': '{t}city_id'}).
    touched_groups: the groups with a row Silver loaded since the cutoff (``incremental_cutoff``);
    rows_of_touched_groups: every row of those groups (joined to a CTE named ``touched``), so a late row rebuilds
    its whole group, not only itself. -#}
{% macro touched_groups(relation, keys) -%}
    select distinct
    {%- for name, expr in keys.items() %}
        {{ expr.format(t='') }} as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
    from {{ relation }}
    where loaded_at > {{ incremental_cutoff() }}
{%- endmacro %}

{% macro rows_of_touched_groups(relation, keys, alias) -%}
    select {{ alias }}.*
    from {{ relation }} as {{ alias }}
    inner join touched
        on
    {%- for name, expr in keys.items() %}
            {{ "and " if not loop.first }}{{ expr.format(t=alias ~ '.') }} = touched.{{ name }}
    {%- endfor %}
{%- endmacro %}
