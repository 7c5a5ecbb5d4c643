"""Silver runs on two Spark deployments: the stack's Spark Connect server (``local[2]`` behind it) and a real
standalone cluster — a master, a worker and a Connect server submitting to it, each its own JVM, whose executors'
Python cannot import our code (it travels as a Spark Connect artifact, as it must to another host)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import private_spark, spark_running
from weatherpipe.settings import Settings


@pytest.fixture(scope="session")
def spark_cluster(local_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings whose ``spark.remote`` is a Connect server in front of a standalone master and worker."""
    cluster = private_spark(local_stack, Path(tmp_path_factory.mktemp("spark-cluster")), cluster=True)
    with spark_running(cluster):
        yield cluster


@pytest.fixture(scope="session", params=["connect", "cluster"])
def spark(request: pytest.FixtureRequest, local_stack: Settings) -> Iterator[Any]:
    from spark_jobs.session import release, spark_session

    target = local_stack if request.param == "connect" else request.getfixturevalue("spark_cluster")
    session = spark_session(target)
    yield session
    release(session)
