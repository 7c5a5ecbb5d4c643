-- Silver output in the warehouse's staging schema: where dbt's sources point. Idempotent.

create table if not exists {schema}.weather_observations (
    city_id              text             not null,
    observed_at          timestamptz      not null,
    temperature_c        double precision,
    feels_like_c         double precision,
    temp_min_c           double precision,
    temp_max_c           double precision,
    dew_point_c          double precision,
    pressure_hpa         double precision,
    humidity_pct         double precision,
    wind_speed_ms        double precision,
    wind_gust_ms         double precision,
    wind_deg             double precision,
    clouds_pct           double precision,
    rain_1h_mm           double precision,
    snow_1h_mm           double precision,
    precipitation_1h_mm  double precision,
    precipitation_mm     double precision,
    precipitation_interval_s integer,
    visibility_m         double precision,
    weather_code         integer,
    weather_code_system  text,
    weather_main         text,
    weather_description  text,
    sunrise_at           timestamptz,
    sunset_at            timestamptz,
    tz_offset_s          integer,
    source               text             not null,
    event_id             text             not null,
    ingested_at          timestamptz      not null,
    bronze_object        text             not null,
    kafka_partition      integer          not null,
    kafka_offset         bigint           not null,
    silver_run_id        text             not null,
    loaded_at            timestamptz      not null default now(),
    primary key (city_id, observed_at)
);
-- Columns added after the first release: an existing table gains them (`create table if not exists` would not).
-- Checked first: ALTER TABLE takes an exclusive lock even when it has nothing to do, and readers would queue.
do $$
begin
    if not exists (
        select from pg_attribute
        where
            attrelid = '{schema}.weather_observations'::regclass
            and attname = 'precipitation_interval_s'
            and not attisdropped
    ) then
        alter table {schema}.weather_observations
        add column if not exists precipitation_mm double precision,
        add column if not exists precipitation_interval_s integer;
    end if;
end $$;
create index if not exists weather_observations_loaded_idx on {schema}.weather_observations (loaded_at);

create table if not exists {schema}.weather_quarantine (
    event_id         text        not null,
    kafka_partition  integer     not null,
    kafka_offset     bigint      not null,
    city_id          text,
    observed_at      timestamptz,
    source           text,
    failed_rules     text[]      not null,
    payload          text        not null,
    ingested_at      timestamptz,
    bronze_object    text        not null,
    silver_run_id    text        not null,
    quarantined_at   timestamptz not null default now(),
    primary key (event_id, kafka_partition, kafka_offset)
);

create table if not exists {schema}.cities (
    city_id     text             primary key,
    city_name   text             not null,
    country     text             not null,
    latitude    double precision not null,
    longitude   double precision not null,
    timezone    text             not null,
    updated_at  timestamptz      not null default now()
);
