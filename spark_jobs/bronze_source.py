"""A Spark 4 Python data source that reads bronze Parquet objects through ``pyarrow.fs.S3FileSystem``.

No Hadoop s3a jars are needed (none can be fetched here): each input partition reads a group of objects with
pyarrow and yields Arrow batches cast to the declared bronze schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from spark_jobs import schemas

# A task reads at least this many bytes of Parquet (or every object) before the read is split over another task:
# Spark's per-task cost (a Python worker among it) dwarfs reading one small object.
BYTES_PER_TASK = 32 * 1024 * 1024


class ObjectGroup(InputPartition):
    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        self.keys = keys


def split_by_size(sizes: dict[str, int], max_groups: int, per_group: int = BYTES_PER_TASK) -> list[list[str]]:
    """Objects in groups of about equal bytes: as many groups as the bytes need at ``per_group`` each, at most
    ``max_groups``; the largest object goes first to the lightest group. Deterministic; every key exactly once."""
    if not sizes:
        return []
    total = sum(max(1, s) for s in sizes.values())
    n = max(1, min(max_groups, len(sizes), -(-total // per_group)))
    groups: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for key in sorted(sizes, key=lambda k: (-sizes[k], k)):
        lightest = loads.index(min(loads))
        groups[lightest].append(key)
        loads[lightest] += max(1, sizes[key])
    return [sorted(g) for g in groups]


class BronzeReader(DataSourceReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.options = dict(options)

    def partitions(self) -> list[InputPartition]:
        """Size-based splits: a few partitions of many objects each (``split_by_size``), so an hourly run of a
        handful of objects is one task and a backfill's are spread by bytes, not by object count."""
        sizes: dict[str, int] = json.loads(self.options["objects"])
        groups = split_by_size(sizes, int(self.options.get("partitions", "4")))
        return [ObjectGroup(g) for g in groups] or [ObjectGroup([])]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyarrow import fs

        from weatherpipe.contracts import bronze_read_schema

        o = self.options
        s3 = fs.S3FileSystem(
            endpoint_override=o["endpoint"],
            scheme=o["scheme"],
            access_key=o["access_key"],
            secret_key=o["secret_key"],
            region=o["region"],
            connect_timeout=3,
            request_timeout=60,
        )
        target = bronze_read_schema()

        def load(key: str) -> Any:
            table = pq.read_table(f"{o['bucket']}/{key}", filesystem=s3)
            table = table.append_column("bronze_object", pa.array([key] * table.num_rows, pa.string()))
            return table.select(target.names).cast(target)

        keys = partition.keys  # type: ignore[attr-defined]
        threads = max(1, int(o.get("read_threads", "16")))
        with ThreadPoolExecutor(max_workers=threads) as pool:  # S3 GETs overlap; pyarrow releases the GIL
            for i in range(0, len(keys), 512):
                tables = list(pool.map(load, keys[i : i + 512]))
                if tables:
                    yield from pa.concat_tables(tables).combine_chunks().to_batches(max_chunksize=50_000)


class BronzeDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "weatherpipe_bronze"

    def schema(self) -> StructType:
        return schemas.BRONZE

    def reader(self, schema: StructType) -> DataSourceReader:
        return BronzeReader(self.options)
