"""Exactly-once writes from Spark into PostgreSQL.

Spark's JDBC writer is not atomic (a failed job leaves partial rows). Here each Spark task COPYs its rows (CSV)
into its own UNLOGGED load table and reports the table's name; the driver then merges the tables of the tasks that
succeeded into the target in ONE transaction and drops them. A killed job leaves only load tables behind, which
``sweep_orphans`` removes on the next start; the target is untouched until the commit.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:  # executors unpickle this module: it imports nothing beyond psycopg, pyarrow and pyspark
    from weatherpipe.settings import PostgresSettings

LOAD_PREFIX = "_silver_load_"


@dataclass(frozen=True)
class LoadTable:
    name: str
    rows: int


def run_token(run_id: str) -> str:
    return hashlib.blake2s(run_id.encode(), digest_size=5).hexdigest()


def copy_partitions(
    df: Any, pg: PostgresSettings, schema: str, like_table: str, kind: str, run_id: str
) -> list[LoadTable]:
    """COPY every partition of ``df`` into its own unlogged table shaped like ``schema.like_table`` (with the
    columns of ``df``). Returns the tables written by the task attempts that succeeded."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    conninfo = pg.conninfo()
    columns = list(df.columns)
    token = run_token(run_id)

    def write(batches: Iterator[Any]) -> Iterator[Any]:
        import psycopg
        import pyarrow as pa
        import pyarrow.csv as pacsv
        from pyspark import TaskContext

        ctx = TaskContext.get()
        name = f"{LOAD_PREFIX}{kind}_{token}_{ctx.partitionId()}_{ctx.attemptNumber()}"
        ident = sql.Identifier(schema, name)
        rows = 0
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("drop table if exists {}").format(ident))
            conn.execute(
                sql.SQL("create unlogged table {} as select {} from {} with no data").format(
                    ident, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema, like_table)
                )
            )
            copy_sql = sql.SQL("copy {} ({}) from stdin (format csv)").format(
                ident, sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for batch in batches:
                    if batch.num_rows == 0:
                        continue
                    buf = io.BytesIO()
                    pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
                    copy.write(buf.getvalue())
                    rows += batch.num_rows
        yield pa.RecordBatch.from_pydict({"table": [name], "rows": [rows]})

    out = StructType([StructField("table", StringType(), False), StructField("rows", LongType(), False)])
    return [LoadTable(r["table"], int(r["rows"])) for r in df.mapInArrow(write, out).collect()]


def sweep_orphans(conn: Any, schema: str) -> list[str]:
    """Drop load tables left behind by killed or cancelled jobs (callers hold the Silver job lock)."""
    names = [
        r[0]
        for r in conn.execute(
            "select tablename from pg_tables where schemaname = %s and tablename like %s",
            (schema, LOAD_PREFIX.replace("_", r"\_") + "%"),
        )
    ]
    for name in names:
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(schema, name)))
    return names
