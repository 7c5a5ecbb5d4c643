"""The external systems the stages talk to, built once by an entry point and handed to every stage it runs.

An entry point (the CLI, the one-shot pipeline, an Airflow task body, a test) builds one ``Resources`` from the
settings and passes it to each stage's ``run(settings, resources=…)``. A stage asks it for the object store and the
warehouse instead of building clients itself, so a pipeline run builds one S3 client, not one per stage, and a test
can hand a stage the resources it wants.

Each resource is built on first use: making a ``Resources`` opens no connection, and a stage that never touches S3
never builds an S3 client. What only a stage knows how to build (the weather source, the Spark session) the entry
point builds with that stage's factory and passes to the stage itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import psycopg

from weatherpipe import db
from weatherpipe.errors import TransientError
from weatherpipe.settings import PostgresSettings, Settings
from weatherpipe.storage import ObjectStore


@dataclass(frozen=True)
class Warehouse:
    """PostgreSQL: one connection per block of work, as the pipeline's loader or as dbt's transformer login."""

    pg: PostgresSettings

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A connection committed at the end of the block, or a ``ServiceUnavailable``/``ConfigError`` naming the
        server (never the password)."""
        with db.connect(self.pg, autocommit=autocommit) as conn:
            yield conn

    @contextmanager
    def exclusive(self, key: str, busy: str) -> Iterator[None]:
        """Hold the session advisory lock named ``key`` for the block (released on exit, or by the server when this
        process dies); a ``TransientError`` saying ``busy`` if another session holds it."""
        with self.connect(autocommit=True) as conn:
            got = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
            if not got or not got[0]:
                raise TransientError(busy)
            try:
                yield
            finally:
                conn.execute("select pg_advisory_unlock(hashtext(%s))", (key,))

    @property
    def transformer(self) -> Warehouse:
        """The same server as the login dbt builds the marts with (it reads staging, owns the marts)."""
        return Warehouse(self.pg.transformer)


class Resources:
    """The object store and the warehouse of one entry point's run, each built on first use."""

    def __init__(self, settings: Settings, *, store: ObjectStore | None = None) -> None:
        self.settings = settings
        if store is not None:
            self.__dict__["store"] = store  # what cached_property reads back

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.settings.s3)

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings.postgres)

    @classmethod
    def of(cls, settings: Settings, resources: Resources | None) -> Resources:
        """The resources an entry point handed over, or ones built for this call (a stage run on its own)."""
        if resources is None:
            return cls(settings)
        if (resources.settings.s3, resources.settings.postgres) != (settings.s3, settings.postgres):
            # one run, one configuration: a stage must not talk to one lake while its settings name another
            raise ValueError("the resources were built from other settings than the stage was given")
        return resources
