"""Retention of bronze objects (a maintenance stage of its own), selected from the manifest."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from ingestion.bronze import manifest
from ingestion.bronze.compaction import maintenance_lock
from weatherpipe.audit import stage_scope
from weatherpipe.resources import Resources
from weatherpipe.results import Metrics, StageResult, new_run_id, utcnow
from weatherpipe.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RetentionMetrics(Metrics):
    """``rows_in`` objects old enough, ``objects`` the ones deleted (or to delete, in a dry run)."""

    cutoff: str = ""
    dry_run: bool = False
    force: bool = False
    unprocessed_kept: int = 0  # old enough, but Silver has not processed them
    unprocessed_deleted: int = 0  # the same, deleted because forced


def retention(
    settings: Settings,
    *,
    days: int,
    dry_run: bool = False,
    force: bool = False,
    now: dt.datetime | None = None,
    resources: Resources | None = None,
) -> StageResult[RetentionMetrics]:
    """Delete the bronze objects bronze wrote more than ``days`` days ago, and their manifest rows.

    Invariants: age is when bronze wrote the object (the manifest's ``written_at``), never the event time — a
    backfill of old observations is kept as long as a fresh load; an object Silver has not processed is never
    deleted unless ``force`` (then it is, and the result counts it apart); objects are chosen from the manifest
    (no bucket listing, whatever the lake's size). S3 first, then the manifest rows: a run cut short in between is
    finished by the next one (deleting a missing key is a no-op)."""
    result = StageResult("retention", new_run_id("retention"), metrics=RetentionMetrics())
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    res = Resources.of(settings, resources)
    ops = settings.postgres.ops_schema
    with stage_scope(settings, result), maintenance_lock(res):
        with res.warehouse.connect() as conn:
            rows = manifest.written_before(conn, ops, cutoff)
        processed = [key for key, done in rows if done]
        unprocessed = [key for key, done in rows if not done]
        doomed = processed + unprocessed if force else processed
        result.rows_in = len(rows)
        result.objects = doomed
        result.metrics = RetentionMetrics(
            cutoff=cutoff.isoformat(),
            dry_run=dry_run,
            force=force,
            unprocessed_deleted=len(unprocessed) if force else 0,
            unprocessed_kept=0 if force else len(unprocessed),
        )
        if unprocessed:
            log.warning(
                "%s %d bronze objects Silver has not processed",
                "deleting (forced)" if force else "keeping",
                len(unprocessed),
            )
        for key in doomed:
            log.info("%s %s", "would delete" if dry_run else "delete", key)
        if not dry_run and doomed:
            res.store.delete(doomed)
            with res.warehouse.connect() as conn:
                manifest.forget(conn, ops, doomed)
            result.rows_out = len(doomed)
    return result
