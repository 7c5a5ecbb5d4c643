"""Silver: the Spark job on the replay year, and its exactly-once write path (COPY into per-task tables + one
merge transaction) vs. a raw psycopg COPY of the same rows and vs. Spark's JDBC writer, in the same run.

Then the replay year on a standalone cluster (master + worker + Connect server, separate JVMs) vs. in-process
local mode. A process is either a local Spark or a Connect client (pyspark decides per process), so the local-mode
parts run first. (One hourly interval, local vs. Connect: ``bench_spark``.)

The JDBC writer needs Debian's libpostgresql-jdbc-java (/usr/share/java/postgresql.jar); without it that row is
skipped.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from bench.common import BenchRow, isolated, timed
from ingestion import bronze, ingest
from spark_jobs import schemas, silver
from spark_jobs.pg_writer import copy_partitions
from weatherpipe import db
from weatherpipe.resources import Resources

JDBC_JAR = Path("/usr/share/java/postgresql.jar")
COLUMNS = list(silver.OBSERVATION_COLUMNS)


def _local_spark(settings):
    from spark_jobs.session import local_session

    return local_session(settings, "weatherpipe-bench", {"spark.jars": str(JDBC_JAR)} if JDBC_JAR.exists() else None)


def _reset(settings) -> None:
    """Staging empty and every bronze object unprocessed again: the next job is a first run."""
    s, o = settings.postgres.staging_schema, settings.postgres.ops_schema
    with db.connect(settings.postgres) as conn:
        conn.execute(
            sql.SQL("truncate {}, {}").format(
                *(sql.Identifier(s, t) for t in ("weather_observations", "weather_quarantine"))
            )
        )
        conn.execute(sql.SQL("update {} set silver_processed_at = null").format(sql.Identifier(o, "bronze_manifest")))


def cli_silver(settings, mode: str, start: dt.datetime, end: dt.datetime) -> float:
    """Wall time of ``weatherpipe silver`` for one interval in a fresh process, as an Airflow task runs it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WEATHERPIPE_")},
        "WEATHERPIPE_SPARK__MODE": mode,
        "WEATHERPIPE_KAFKA__TOPIC": settings.kafka.topic,
        "WEATHERPIPE_POSTGRES__STAGING_SCHEMA": settings.postgres.staging_schema,
        "WEATHERPIPE_POSTGRES__OPS_SCHEMA": settings.postgres.ops_schema,
        "WEATHERPIPE_LOG_LEVEL": "WARNING",
    }
    cmd = [
        str(Path(sys.executable).with_name("weatherpipe")),
        "silver",
        "--start",
        f"{start:%Y-%m-%dT%H:%M}",
        "--end",
        f"{end:%Y-%m-%dT%H:%M}",
        "--reprocess",  # the same interval each time, read again on purpose
    ]
    wall, out = timed(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True, check=False))
    if out.returncode != 0:
        raise RuntimeError(f"silver ({mode}) failed: {out.stderr[-500:]}")
    assert json.loads(out.stdout)["rows_in"] > 0
    return wall


def run() -> list[BenchRow]:
    rows: list[BenchRow] = []
    with isolated("silver") as settings:
        ingest.run(
            settings,
            source="replay",
            city_ids=["nyc-jfk", "nyc-lga", "nyc-ewr"],
            start=settings.pipeline.replay_default_start.replace(month=1, day=1),
            end=settings.pipeline.replay_default_start.replace(year=2014),
        )
        drained = bronze.run(settings)
        spark = _local_spark(settings)
        job_s, result = timed(lambda: silver.run(settings, spark=spark))
        n = result.rows_out
        rows.append(
            BenchRow(
                "silver",
                f"job rate, replay year, {drained.rows_out} rows (rows/s)",
                result.rows_in / job_s,
                0,
                0,
                "",
                f"wall {job_s:.1f}s, {len(result.objects)} objects",
            )
        )

        schema = settings.postgres.staging_schema
        with db.connect(settings.postgres) as conn:
            cur = conn.execute(
                sql.SQL("select {} from {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.Identifier(schema, "weather_observations")
                )
            )
            data = cur.fetchall()
        table = pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in data])
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
        payload = buf.getvalue()

        def fresh(name: str) -> None:
            with db.connect(settings.postgres) as conn:
                conn.execute(
                    sql.SQL("create table {} (like {} including all)").format(
                        sql.Identifier(schema, name), sql.Identifier(schema, "weather_observations")
                    )
                )

        def raw_copy() -> None:
            with (
                db.connect(settings.postgres) as conn,
                conn.cursor() as cur,
                cur.copy(
                    sql.SQL("copy {} ({}) from stdin (format csv)").format(
                        sql.Identifier(schema, "ref_copy"), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
                    )
                ) as copy,
            ):
                copy.write(payload)

        fresh("ref_copy")
        copy_s, _ = timed(raw_copy)

        df = (
            spark.createDataFrame(table.to_pandas(), schema=_spark_schema())
            .repartition(settings.spark.shuffle_partitions)
            .cache()
        )
        df.count()

        def ours() -> None:
            tables = copy_partitions(df, settings.postgres, schema, "weather_observations", "obs", "bench-run")
            with db.connect(settings.postgres) as conn:
                conn.execute(sql.SQL("truncate {}").format(sql.Identifier(schema, "weather_observations")))
            silver.merge(Resources(settings), "bench-run", tables, [], [])

        ours_s, _ = timed(ours)
        rows.append(
            BenchRow(
                "silver",
                f"write path vs raw COPY, {n} rows (rows/s)",
                n / ours_s,
                n / copy_s,
                copy_s / ours_s,
                ">= 0.3",
                "ours: per-task COPY + one merge txn",
            )
        )
        if JDBC_JAR.exists():
            fresh("ref_jdbc")
            pg = settings.postgres
            url = f"jdbc:postgresql://{pg.host}:{pg.port}/{pg.database}?stringtype=unspecified"
            props = {
                "user": pg.user,
                "password": pg.password.get_secret_value() if pg.password else "",
                "driver": "org.postgresql.Driver",
            }
            jdbc_s, _ = timed(lambda: df.write.jdbc(url, f'"{schema}".ref_jdbc', mode="append", properties=props))
            rows.append(
                BenchRow(
                    "silver",
                    f"write path vs Spark JDBC writer, {n} rows (rows/s)",
                    n / ours_s,
                    n / jdbc_s,
                    jdbc_s / ours_s,
                    ">= 1.0",
                    "JDBC: not atomic",
                )
            )
        df.unpersist()
        spark.stop()
        rows += _connect_rows(settings, job_s)
    return rows


def _connect_rows(settings, local_year_s: float) -> list[BenchRow]:
    from spark_jobs.session import release, spark_session
    from tests.support import private_spark, spark_running

    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory() as state:
        cluster = private_spark(settings, Path(state), cluster=True)
        with spark_running(cluster):
            session = spark_session(cluster)
            _reset(settings)
            cluster_s, result = timed(lambda: silver.run(settings, spark=session))
            release(session)
    rows.append(
        BenchRow(
            "silver",
            "replay year on a standalone cluster vs local mode (s)",
            cluster_s,
            local_year_s,
            local_year_s / cluster_s,
            "",
            f"master + 1 worker (2 cores) + Connect; {result.rows_in} rows",
        )
    )
    return rows


def _spark_schema():
    from pyspark.sql.types import StringType, StructField, StructType

    fields = {f.name: f for f in [*schemas.CANONICAL.fields]}
    return StructType([fields.get(c, StructField(c, StringType())) for c in COLUMNS])
