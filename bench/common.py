"""What every bench shares: isolated settings on the local stack, a timer and the result row."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from weatherpipe import db, stack
from weatherpipe.settings import Settings, load_settings


@dataclass
class BenchRow:
    stage: str
    measure: str
    ours: float
    reference: float
    ratio: float
    target: str
    note: str = ""

    def ok(self) -> bool | None:
        if not self.target:
            return None
        op, value = self.target.split()
        return self.ratio >= float(value) if op == ">=" else self.ratio <= float(value)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@contextmanager
def isolated(name: str) -> Iterator[Settings]:
    """Settings with their own topic, prefixes and schemas; the schemas are dropped afterwards."""
    os.environ.setdefault("DBT_QUIET", "true")  # keep dbt's per-node lines out of the bench table
    base = load_settings()
    stack.up(base)
    uid = f"{name}_{uuid.uuid4().hex[:6]}"
    update = {
        "kafka": base.kafka.model_copy(update={"topic": f"bench_{uid}", "consumer_group": f"bench_{uid}"}),
        "s3": base.s3.model_copy(
            update={"bronze_prefix": f"bench/{uid}/bronze", "deadletter_prefix": f"bench/{uid}/deadletter"}
        ),
        "postgres": base.postgres.model_copy(update={"staging_schema": f"bstg_{uid}", "ops_schema": f"bops_{uid}"}),
    }
    settings = base.model_copy(update=update)
    db.provision(settings)
    try:
        yield settings
    finally:
        with db.connect(settings.postgres.admin) as conn:
            for schema in (settings.postgres.staging_schema, settings.postgres.ops_schema):
                conn.execute(f'drop schema if exists "{schema}" cascade')
