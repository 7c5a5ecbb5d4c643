{#- The read-only BI role: USAGE on the marts schema and SELECT on its tables, nothing else. Idempotent; run at the
    end of every dbt run by the transformer, which owns the marts. The role itself (and its password, as a SCRAM
    verifier) comes from `weatherpipe db setup`: dbt logs the SQL it runs, and the transformer cannot create roles. -#}
{% macro grant_bi_reader() %}
    {% if execute and flags.WHICH in ('run', 'build') %}
        {% set role = adapter.quote(var('bi_role')) %}
        {% set marts = adapter.quote(generate_schema_name('marts', none)) %}
        {% set sql %}
            create schema if not exists {{ marts }};
            grant usage on schema {{ marts }} to {{ role }};
            grant select on all tables in schema {{ marts }} to {{ role }};
            alter default privileges in schema {{ marts }} grant select on tables to {{ role }};
        {% endset %}
        {% do run_query(sql) %}
        {{ log("granted " ~ var('bi_role') ~ " read access to " ~ generate_schema_name('marts', none), info=True) }}
    {% endif %}
{% endmacro %}
