{#- Incremental models revisit rows Silver loaded after this moment: the newest load already in the model,
    less the lookback window for late-arriving rows (1900 when the model is empty). -#}
{% macro incremental_cutoff() -%}
    (
        select coalesce(max(loaded_at), cast('1900-01-01' as timestamptz))
        from {{ this }}
    ) - interval '{{ var("lookback_hours") }} hours'
{%- endmacro %}
