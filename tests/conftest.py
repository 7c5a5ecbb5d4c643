"""Shared fixtures and the test layers.

Layers follow the folders: ``tests/unit`` (marker ``unit``: no service, no Spark, no subprocess — enforced there),
``tests/integration`` (``integration``: the real local stack) and ``tests/faults`` (``fault``: kills, outages, full
disks). ``slow`` marks tests of more than a few seconds. Services: the local stack, started once per session and
reused when running; each test gets its own Kafka topic, S3 prefix and Postgres schemas."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# The developer's own .env or API key must not leak into tests.
os.environ.pop("OPENWEATHER_API_KEY", None)

from tests.support import derive
from weatherpipe import db, stack
from weatherpipe.settings import Settings, load_settings

TESTS = Path(__file__).resolve().parent
LAYERS = {"unit": "unit", "integration": "integration", "faults": "fault"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the layer its folder stands for."""
    for item in items:
        layer = Path(item.fspath).resolve().relative_to(TESTS).parts[0]
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of {sorted(LAYERS)}")
        item.add_marker(LAYERS[layer])


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings(_env_file=None)


@pytest.fixture(scope="session")
def local_stack(base_settings: Settings) -> Settings:
    """Bring the local stack up once (a running healthy stack is reused, and left running)."""
    stack.up(base_settings)
    return base_settings


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(local_stack: Settings, uid: str) -> Iterator[Settings]:
    """Settings isolated for one test: own topic, consumer group, S3 prefixes and Postgres schemas."""
    isolated = derive(
        local_stack,
        kafka={"topic": f"t_{uid}", "consumer_group": f"g_{uid}"},
        s3={"bronze_prefix": f"tests/{uid}/bronze", "deadletter_prefix": f"tests/{uid}/deadletter"},
        postgres={"staging_schema": f"stg_{uid}", "ops_schema": f"ops_{uid}"},
        stack={"state_dir": local_stack.state_dir},
    )
    db.provision(isolated)
    yield isolated
    with db.connect(isolated.postgres.admin) as conn:
        for schema in (isolated.postgres.staging_schema, isolated.postgres.ops_schema):
            conn.execute(f'drop schema if exists "{schema}" cascade')


@pytest.fixture(scope="session")
def spark(local_stack: Settings) -> Any:
    """A session on the stack's Spark Connect server (the default ``spark.mode``)."""
    from spark_jobs.session import spark_session

    return spark_session(local_stack, "weatherpipe-tests")
