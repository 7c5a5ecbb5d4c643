{#- Custom schemas are used as named (marts, intermediate, ...), behind an optional prefix that tests use
    to isolate themselves. dbt's default would glue the target schema in front. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ var('schema_prefix') }}{{ target.schema | trim }}
    {%- else -%}
        {{ var('schema_prefix') }}{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
