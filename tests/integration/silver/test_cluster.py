"""Silver on a real standalone cluster: the work runs in the worker's executors, not in the driver, and our code
reaches them only as a Spark Connect artifact."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from spark_jobs import silver
from tests.support import ingest_twice_to_bronze, query
from weatherpipe import stack
from weatherpipe.settings import ROOT, Settings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
START = dt.datetime(2013, 2, 11, tzinfo=dt.UTC)
END = dt.datetime(2013, 2, 12, tzinfo=dt.UTC)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def tasks_by_executor(cluster: Settings) -> dict[str, int]:
    app = stack.SparkConnectService(cluster).app_id()
    assert app, "the Connect server's REST API names no application"
    base = f"http://127.0.0.1:{cluster.spark.connect_ui_port}/api/v1/applications/{app}"
    return {e["id"]: int(e["totalTasks"]) for e in get_json(f"{base}/allexecutors")}


@pytest.fixture
def cluster_session(spark_cluster: Settings) -> Iterator[Any]:
    from spark_jobs.session import release, spark_session

    session = spark_session(spark_cluster)
    yield session
    release(session)


def test_silver_tasks_run_on_the_workers_executors(
    spark_cluster: Settings, settings: Settings, cluster_session: Any
) -> None:
    master = get_json(stack.SparkMasterService(spark_cluster).json_url)
    apps = [a for a in master["activeapps"] if a["name"] == "weatherpipe-connect"]
    assert len(apps) == 1 and apps[0]["cores"] > 0, master["activeapps"]  # the Connect server holds the cores
    assert [w["state"] for w in master["workers"]] == ["ALIVE"]
    assert master["workers"][0]["coresused"] > 0
    before = tasks_by_executor(spark_cluster)

    loaded = ingest_twice_to_bronze(settings, START, END)
    result = silver.run(settings, spark=cluster_session)
    assert result.rows_out == loaded == query(settings, "select count(*) from {s}.weather_observations")[0][0]

    after = tasks_by_executor(spark_cluster)
    ran = {e: n - before.get(e, 0) for e, n in after.items()}
    assert ran.get("driver", 0) == 0, ran  # nothing ran inside the Connect server's JVM
    assert sum(n for e, n in ran.items() if e != "driver") > 0, ran


def test_executors_get_our_code_only_as_an_artifact(spark_cluster: Settings, cluster_session: Any) -> None:
    """The executors' Python is the stack's executor interpreter, which cannot see the project; what they import
    of ours comes from the session's uploaded zip."""

    def where(batches: Iterator[Any]) -> Iterator[Any]:
        import importlib.util
        import sys

        import pyarrow as pa

        for _ in batches:
            spec = importlib.util.find_spec("weatherpipe")
            yield pa.RecordBatch.from_pydict(
                {"python": [sys.executable], "origin": [spec.origin if spec else ""], "path": [":".join(sys.path)]}
            )

    row = cluster_session.range(1).mapInArrow(where, "python string, origin string, path string").collect()[0]
    assert row.python == str(stack.executor_python(spark_cluster))
    assert ".zip/weatherpipe/" in row.origin and not row.origin.startswith(str(ROOT)), row.origin
    assert str(ROOT) not in row.path.split(":")
