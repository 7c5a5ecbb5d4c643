{#- The read-only BI role: SELECT on the marts schema only. Idempotent; run at the end of every dbt run.
    Its password (if any) comes from the environment, never from the project. -#}
{% macro grant_bi_reader() %}
    {% if execute and flags.WHICH in ('run', 'build') %}
        {% set role = var('bi_role') %}
        {% set marts = generate_schema_name('marts', none) %}
        {% set password = env_var('WEATHERPIPE_DBT_BI_PASSWORD', '') %}
        {% set sql %}
            do $$
            begin
                if not exists (select 1 from pg_roles where rolname = '{{ role }}') then
                    create role {{ adapter.quote(role) }} login nosuperuser nocreatedb nocreaterole noinherit;
                end if;
            end $$;
            {% if password %}
            alter role {{ adapter.quote(role) }} password {{ dbt.string_literal(password) }};
            {% endif %}
            grant connect on database {{ adapter.quote(target.dbname) }} to {{ adapter.quote(role) }};
            create schema if not exists {{ adapter.quote(marts) }};
            grant usage on schema {{ adapter.quote(marts) }} to {{ adapter.quote(role) }};
            grant select on all tables in schema {{ adapter.quote(marts) }} to {{ adapter.quote(role) }};
            alter default privileges in schema {{ adapter.quote(marts) }}
                grant select on tables to {{ adapter.quote(role) }};
        {% endset %}
        {% do run_query(sql) %}
        {{ log("granted " ~ role ~ " read access to " ~ marts, info=True) }}
    {% endif %}
{% endmacro %}
