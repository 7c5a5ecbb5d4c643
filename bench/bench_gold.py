"""Gold: wall time of an incremental `dbt build` for one new hour on top of one year of history vs. on top of an
empty history, in the same run (target: ratio <= 1.25).

History is one year of hourly Silver rows for every configured city, generated in SQL, then vacuumed and analysed
(as autovacuum would long since have done for real history). The two cases' hourly builds alternate, three each, and
each keeps its median: a single `dbt build` of a few seconds swings by a second or more on a busy 2-core machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from bench.common import BenchRow, isolated, timed
from spark_jobs import silver
from weatherpipe import db, gold
from weatherpipe.settings import Settings

HOURS = 24 * 365
NEW_HOURS = ["2025-01-01 00:00+00", "2025-01-01 01:00+00", "2025-01-01 02:00+00"]


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
    silver.ensure_staging(settings)
    from weatherpipe.cities import load_cities

    with db.connect(settings.postgres) as conn, conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "insert into {}.cities (city_id, city_name, country, latitude, longitude, timezone) "
                "values (%s, %s, %s, %s, %s, %s)"
            ).format(sql.Identifier(settings.postgres.staging_schema)),
            [(c.id, c.name, c.country, c.lat, c.lon, c.timezone) for c in load_cities(settings)],
        )


def _vacuum(settings: Settings) -> None:
    """Vacuum and analyse every table of the case (staging, ops and dbt's schemas), as autovacuum would long since
    have done for real history: otherwise it wakes up in the middle of a timed build."""
    prefixes = [settings.postgres.staging_schema, settings.postgres.ops_schema]
    with db.connect(settings.postgres.admin, autocommit=True) as conn:
        tables = conn.execute(
            "select format('%%I.%%I', schemaname, tablename) from pg_tables "
            "where schemaname = any(%s) or starts_with(schemaname, %s)",
            (prefixes, settings.dbt.schema_prefix),
        ).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("vacuum analyze {}").format(sql.SQL(table)))


@contextmanager
def _case(name: str, history_hours: int) -> Iterator[Settings]:
    """Staging with `history_hours` of history, and the Gold layer built on it."""
    with isolated(f"gold_{name}") as base:
        prefix = f"b{base.postgres.staging_schema[-6:]}_"  # unique per run: never build on a killed run's tables
        # its own dbt target folder: switching vars between the two cases would force dbt to re-parse every time
        target = base.state_dir / "bench" / f"dbt-target-{name}"
        dbt = base.dbt.model_copy(update={"schema_prefix": prefix, "target_path": target})
        settings = base.model_copy(update={"dbt": dbt})
        try:
            _prepare(settings)
            if history_hours:
                _rows(settings, "2024-01-01 00:00+00", history_hours)
            gold.run(settings)
            _vacuum(settings)
            yield settings
        finally:
            db.drop_schemas(settings.postgres, prefix)


def run() -> list[BenchRow]:
    """Both cases side by side, their hourly builds interleaved, so a slow moment of the machine hits both."""
    times: dict[str, list[float]] = {"empty": [], "year": []}
    facts = 0
    with _case("empty", 0) as empty, _case("year", HOURS) as year:
        for hour in NEW_HOURS:
            for name, settings in (("empty", empty), ("year", year)):
                _rows(settings, hour, 1)
                seconds, result = timed(lambda s=settings: gold.run(s))
                times[name].append(seconds)
                if name == "year":
                    facts = result.rows_out
    empty_s, year_s = statistics.median(times["empty"]), statistics.median(times["year"])
    return [
        BenchRow(
            "gold",
            f"incremental dbt build, +1 hour on {facts} facts vs empty (s)",
            year_s,
            empty_s,
            year_s / empty_s,
            "<= 1.25",
            "median of 3 interleaved hourly `dbt build`s incl. tests",
        )
    ]
