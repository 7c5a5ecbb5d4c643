"""Silver: bronze -> PostgreSQL staging through the real Spark job, exactly once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest

from ingestion import bronze, ingest
from spark_jobs import schemas, silver
from tests.support import (
    NYC,
    blocked_by,
    derive,
    free_port_block,
    in_thread,
    ingest_twice_to_bronze,
    query,
    run_cli,
    wait_for,
)
from weatherpipe.errors import ExpectationFailed, TransientError
from weatherpipe.resources import Resources
from weatherpipe.settings import Settings

pytestmark = pytest.mark.spark
# 2013-02-12 08:00 UTC holds a real anomaly of the NOAA record: EWR wind speed 1048 mph.
START = dt.datetime(2013, 2, 11, tzinfo=dt.UTC)
END = dt.datetime(2013, 2, 14, tzinfo=dt.UTC)


def table_hash(settings: Settings) -> str:
    return query(
        settings,
        "select md5(string_agg(t::text, '|' order by city_id, observed_at)) from "
        "(select city_id, observed_at, temperature_c, wind_speed_ms, event_id, ingested_at "
        "from {s}.weather_observations) t",
    )[0][0]


@pytest.fixture
def bronze_twice(settings: Settings) -> int:
    return ingest_twice_to_bronze(settings, START, END)


def test_bronze_to_staging_cleans_quarantines_and_deduplicates(settings: Settings, spark, bronze_twice: int) -> None:
    n = bronze_twice
    result = silver.run(settings, spark=spark, run_id="silver-1")
    d = result.metrics
    assert result.rows_in == 2 * n
    assert result.rows_rejected == d.quarantined == 2  # the anomaly, once per ingestion
    assert d.rule_counts["wind_speed_range"] == 2
    assert d.duplicates_in_batch == n - 1
    assert result.rows_out == d.inserted == n - 1
    # reconciliation: every bronze row is accounted for
    assert result.rows_in == d.inserted + d.updated + d.stale_vs_staging + d.duplicates_in_batch + result.rows_rejected
    counts = query(settings, "select count(*), count(distinct (city_id, observed_at)) from {s}.weather_observations")
    assert counts == [(n - 1, n - 1)]
    quarantined = query(settings, "select city_id, failed_rules, payload from {s}.weather_quarantine")
    assert {(c, tuple(r)) for c, r, _ in quarantined} == {("nyc-ewr", ("wind_speed_range",))}
    assert all('"wind_speed":"1048.36058"' in p for _, _, p in quarantined)
    row = query(
        settings,
        "select temperature_c, source, silver_run_id, bronze_object from {s}.weather_observations "
        "where city_id = 'nyc-jfk' and observed_at = '2013-02-11 06:00+00'",
    )[0]
    assert row[1:3] == ("replay", "silver-1") and row[3].endswith(".parquet")
    assert query(settings, "select count(*) from {s}.cities")[0][0] == 21
    assert query(settings, "select count(*) from {o}.bronze_manifest where silver_processed_at is null")[0][0] == 0
    latest = query(settings, "select max(ingested_at) from {s}.weather_observations")[0][0]
    assert query(settings, "select min(ingested_at) from {s}.weather_observations")[0][0] == latest  # later wins


def test_identical_refetch_is_a_no_op_but_a_changed_value_updates(settings: Settings, spark, bronze_twice: int) -> None:
    silver.run(settings, spark=spark)
    before = table_hash(settings)
    ingest.run(settings, source="replay", city_ids=NYC, start=START, end=END)  # a third, identical fetch
    bronze.run(settings)
    again = silver.run(settings, spark=spark)
    assert again.metrics.updated == 0 and again.metrics.stale_vs_staging == bronze_twice - 1
    assert table_hash(settings) == before
    from ingestion.envelope import Envelope
    from tests.support import publish_raw

    corrected = Envelope.build(
        source="replay",
        city_id="nyc-jfk",
        observed_at=START + dt.timedelta(hours=6),
        run_id="fix",
        payload={"origin": "JFK", "temp": "50", "time_hour": "x"},
    )
    publish_raw(settings, [corrected.to_bytes()])
    bronze.run(settings)
    fixed = silver.run(settings, spark=spark)
    assert (fixed.metrics.inserted, fixed.metrics.updated) == (0, 1)
    assert query(
        settings,
        "select temperature_c from {s}.weather_observations where city_id = 'nyc-jfk' and observed_at = %s",
        (START + dt.timedelta(hours=6),),
    )[0][0] == pytest.approx(10.0)


def test_rerun_is_a_no_op(settings: Settings, spark, bronze_twice: int) -> None:
    silver.run(settings, spark=spark)
    before = table_hash(settings)
    nothing = silver.run(settings, spark=spark)
    assert (nothing.rows_in, nothing.objects) == (0, [])
    window = silver.run(settings, spark=spark, start=START, end=END)  # the same window, nothing new in it
    assert (window.rows_in, window.objects) == (0, [])
    again = silver.run(settings, spark=spark, start=START, end=END, reprocess=True)  # on purpose
    assert again.rows_in == 2 * bronze_twice and again.rows_out == 0
    assert again.metrics.stale_vs_staging == bronze_twice - 1
    assert table_hash(settings) == before


def test_fail_expectation_writes_nothing(settings: Settings, spark, bronze_twice: int, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("expectations:\n  - {name: no_newark, action: fail, predicate: \"city_id <> 'nyc-ewr'\"}\n")
    strict = derive(settings, paths={"expectations_file": rules})
    with pytest.raises(ExpectationFailed, match="no_newark"):
        silver.run(strict, spark=spark, run_id="silver-fail")
    assert query(settings, "select count(*) from {s}.weather_observations")[0][0] == 0
    assert query(settings, "select count(*) from {o}.bronze_manifest where silver_processed_at is not null")[0][0] == 0
    assert query(settings, "select status from {o}.pipeline_runs where run_id = 'silver-fail'") == [("failed",)]


def test_a_staging_table_from_before_gains_the_new_columns_without_locking_readers(settings: Settings) -> None:
    """An install from before `precipitation_mm` gets the columns; once they exist, setting staging up again
    takes no exclusive lock (a reader holding a share lock does not block it)."""
    silver.ensure_staging(settings)
    table = f'"{settings.postgres.staging_schema}".weather_observations'
    query(settings, f"alter table {table} drop column precipitation_mm, drop column precipitation_interval_s")
    silver.ensure_staging(settings)
    columns = {
        r[0] for r in query(settings, "select attname from pg_attribute where attrelid = %s::regclass", (table,))
    }
    assert {"precipitation_mm", "precipitation_interval_s"} <= columns
    with psycopg.connect(settings.postgres.admin.conninfo()) as reader:
        reader.execute(f"select count(*) from {table}")  # holds an access share lock until rollback
        thread, out = in_thread(lambda: silver.ensure_staging(settings))
        wait_for(
            lambda: not thread.is_alive() or blocked_by(settings, reader, "%weather_observations%"),
            what="setting staging up again to finish or to wait for the reader",
        )
        blocked = thread.is_alive()
        reader.rollback()
        thread.join()
    assert not blocked and "error" not in out, out


POSTGRES_TYPES = {
    "string": "text",
    "double": "double precision",
    "int": "integer",
    "bigint": "bigint",
    "timestamp": "timestamp with time zone",
}


def test_the_silver_schema_is_the_staging_tables(settings: Settings) -> None:
    """Every column Silver writes exists in the staging DDL with the type its Spark schema declares."""
    silver.ensure_staging(settings)
    table = dict(
        query(
            settings,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = 'weather_observations'",
            (settings.postgres.staging_schema,),
        )
    )
    declared = {f.name: POSTGRES_TYPES[f.dataType.simpleString()] for f in schemas.CANONICAL.fields}
    written = [c for c in silver.OBSERVATION_COLUMNS if c != "silver_run_id"]
    assert {c: table.get(c) for c in written} == {c: declared[c] for c in written}
    assert table["silver_run_id"] == "text"


def test_local_mode_needs_no_server(settings: Settings, bronze_twice: int) -> None:
    """``spark.mode = local`` runs the same job in the calling process (here the CLI, as a user runs it), with the
    Connect endpoint pointing at nothing."""
    env = {
        "WEATHERPIPE_SPARK__MODE": "local",
        "WEATHERPIPE_SPARK__REMOTE": f"sc://127.0.0.1:{free_port_block(1)}",
        "WEATHERPIPE_KAFKA__TOPIC": settings.kafka.topic,
        "WEATHERPIPE_POSTGRES__STAGING_SCHEMA": settings.postgres.staging_schema,
        "WEATHERPIPE_POSTGRES__OPS_SCHEMA": settings.postgres.ops_schema,
        "WEATHERPIPE_LOG_FORMAT": "json",
    }
    out = run_cli("silver", env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["rows_out"] == bronze_twice - 1
    assert query(settings, "select count(*) from {s}.weather_observations")[0][0] == bronze_twice - 1


def test_one_silver_job_at_a_time(settings: Settings) -> None:
    """A second Silver run on the same staging schema is refused as transient (its task retries later)."""
    with silver.job_lock(Resources(settings)), pytest.raises(TransientError, match="another Silver job"):
        silver.run(settings)
