"""Gold: wall time of an incremental `dbt build` for one new hour on top of one year of history vs. on top of an
empty history, in the same run (target: ratio <= 1.25).

History is one year of hourly Silver rows for every configured city, generated in SQL.
"""

from __future__ import annotations

from psycopg import sql

from bench.common import BenchRow, isolated, timed
from spark_jobs import silver_job
from weatherpipe import db, gold
from weatherpipe.settings import Settings

HOURS = 24 * 365
NEW_HOUR = "2025-01-01 00:00+00"


def _rows(settings: Settings, start: str, hours: int) -> None:
    s = sql.Identifier(settings.postgres.staging_schema)
    with db.connect(settings.postgres) as conn:
        conn.execute(
            sql.SQL(
                """insert into {s}.weather_observations (city_id, observed_at, temperature_c, pressure_hpa,
                   humidity_pct, wind_speed_ms, precipitation_1h_mm, weather_main, weather_code, weather_code_system,
                   source, event_id, ingested_at, bronze_object, kafka_partition, kafka_offset, silver_run_id,
                   loaded_at)
               select c.city_id, h, 10 + 8 * sin(extract(epoch from h) / 43200.0), 1013, 70, 4.5,
                      case when extract(hour from h) = 6 then 0.4 else 0 end, 'Clouds', 803, 'owm', 'replay',
                      md5(c.city_id || h::text), h, 'bench', 0, 0, 'bench',
                      least(now(), h + interval '5 minutes')  -- history was loaded hour by hour, long ago
               from {s}.cities c, generate_series(%s::timestamptz, %s::timestamptz + (%s - 1) * interval '1 hour',
                                                  interval '1 hour') h"""
            ).format(s=s),
            (start, start, hours),
        )


def _prepare(settings: Settings) -> None:
    silver_job.ensure_staging(settings)
    from ingestion.cities import load_cities

    with db.connect(settings.postgres) as conn, conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "insert into {}.cities (city_id, city_name, country, latitude, longitude, timezone) "
                "values (%s, %s, %s, %s, %s, %s)"
            ).format(sql.Identifier(settings.postgres.staging_schema)),
            [(c.id, c.name, c.country, c.lat, c.lon, c.timezone) for c in load_cities(settings)],
        )


def _case(name: str, history_hours: int) -> tuple[float, int]:
    with isolated(f"gold_{name}") as base:
        prefix = f"b{base.postgres.staging_schema[-6:]}_"  # unique per run: never build on a killed run's tables
        settings = base.model_copy(update={"dbt": base.dbt.model_copy(update={"schema_prefix": prefix})})
        try:
            _prepare(settings)
            if history_hours:
                _rows(settings, "2024-01-01 00:00+00", history_hours)
            gold.run(settings)  # build the history (or the empty tables)
            _rows(settings, NEW_HOUR, 1)
            seconds, result = timed(lambda: gold.run(settings))
        finally:
            db.drop_schemas(settings.postgres, prefix)
        return seconds, result.rows_out


def run() -> list[BenchRow]:
    empty_s, _ = _case("empty", 0)
    year_s, facts = _case("year", HOURS)
    return [
        BenchRow(
            "gold",
            f"incremental dbt build, +1 hour on {facts} facts vs empty (s)",
            year_s,
            empty_s,
            year_s / empty_s,
            "<= 1.25",
            "wall time of `dbt build` incl. tests",
        )
    ]
