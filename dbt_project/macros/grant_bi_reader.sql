{#- The read-only BI role: SELECT on the marts schema only. Idempotent; run at the end of every dbt run.
    Its password is never set here (dbt logs the SQL it runs): `weatherpipe gold` sets a SCRAM verifier. -#}
{% macro grant_bi_reader() %}
    {% if execute and flags.WHICH in ('run', 'build') %}
        {% set role = var('bi_role') %}
        {% set marts = generate_schema_name('marts', none) %}
        {% set sql %}
            do $$
            begin
                if not exists (select 1 from pg_roles where rolname = '{{ role }}') then
                    create role {{ adapter.quote(role) }} login nosuperuser nocreatedb nocreaterole noinherit;
                end if;
            end $$;
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
