"""The run audit: every stage result lands in ``ops.pipeline_runs``, and ``stage_scope`` wires that up."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from weatherpipe.db import connect, ensure_warehouse
from weatherpipe.errors import PipelineError
from weatherpipe.log import Redactor, log_context
from weatherpipe.results import StageResult, timed
from weatherpipe.settings import Settings

log = logging.getLogger(__name__)


def record_result(settings: Settings, result: StageResult) -> None:
    """Upsert the stage result into ``ops.pipeline_runs`` (a rerun of the same run/stage replaces it)."""
    pg = settings.postgres
    query = sql.SQL(
        """insert into {t} (run_id, stage, status, rows_in, rows_out, rows_rejected, object_count, offsets,
               interval_start, interval_end, started_at, finished_at, duration_s, details, error)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (run_id, stage) do update set
               status = excluded.status, rows_in = excluded.rows_in, rows_out = excluded.rows_out,
               rows_rejected = excluded.rows_rejected, object_count = excluded.object_count,
               offsets = excluded.offsets, interval_start = excluded.interval_start,
               interval_end = excluded.interval_end, started_at = excluded.started_at,
               finished_at = excluded.finished_at, duration_s = excluded.duration_s,
               details = excluded.details, error = excluded.error, recorded_at = now()"""
    ).format(t=sql.Identifier(pg.ops_schema, "pipeline_runs"))
    redact = Redactor(settings.secrets())  # a provider's error text may echo a secret
    with connect(pg) as conn:
        conn.execute(
            query,
            (
                result.run_id,
                result.stage,
                result.status,
                result.rows_in,
                result.rows_out,
                result.rows_rejected,
                len(result.objects),
                json.dumps(result.offsets, default=str),
                result.interval_start,
                result.interval_end,
                result.started_at,
                result.finished_at,
                result.duration_s,
                redact(json.dumps(result.metrics.to_dict(), default=str)),
                redact(result.error) if result.error else None,
            ),
        )


def _record_quietly(settings: Settings, result: StageResult) -> None:
    try:
        record_result(settings, result)
    except (PipelineError, psycopg.Error) as exc:  # the audit table must never hide the stage's own outcome
        log.warning("could not record the stage result", extra={"error": str(exc)})


@contextmanager
def stage_scope(settings: Settings, result: StageResult) -> Iterator[StageResult]:
    """Log context + timing + one result line + the audit row, written after the outcome is known."""
    ensure_warehouse(settings, once=True)
    with (
        log_context(stage=result.stage, run_id=result.run_id),
        timed(result, on_finish=lambda r: _record_quietly(settings, r)),
    ):
        yield result
