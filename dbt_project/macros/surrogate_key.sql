{#- md5 of the text forms of the given expressions, NULL-safe and separator-safe. -#}
{% macro surrogate_key(expressions) -%}
    md5(
        {%- for expr in expressions %}
            coalesce(cast({{ expr }} as text), '<null>'){% if not loop.last %} || '|' ||{% endif %}
        {%- endfor %}
    )
{%- endmacro %}
