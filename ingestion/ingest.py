"""Ingest stage: fetch observations from a weather source and publish them to Kafka.

``run(settings, …) -> StageResult[IngestMetrics]`` is what the CLI, the Airflow task and the tests call; the source
(``make_source``) and the object store (``resources``) may be handed in by the caller.

Invariants:
- every configured city ends in exactly one place: an observation published (``rows_out``), a failure with its
  reason (``failed_cities``), or — when the provider proves unreachable — ``skipped_cities``;
- a body the source rejected is kept, with its reason, as one line of the source dead letter
  (``<deadletter_prefix>/source=<source>/date=<day>/<run_id>.jsonl``); nothing rejected disappears;
- failure reasons are stored and printed with every configured secret redacted (a provider may echo the key);
- an unreachable provider fails the stage with one line, after the observations already fetched are published.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from ingestion.budget import CallBudget
from ingestion.envelope import SOURCES, Envelope
from ingestion.producer import close_producer, make_producer, publish
from ingestion.sources.base import FetchFailure, FetchItem, Observation, ProviderUnreachable, WeatherSource
from ingestion.sources.open_meteo import OpenMeteoArchiveSource, OpenMeteoSource
from ingestion.sources.openweather import OpenWeatherSource
from ingestion.sources.replay import ReplaySource
from ingestion.sources.synthetic import PREFIX as SYNTHETIC_PREFIX
from ingestion.sources.synthetic import SyntheticSource
from weatherpipe import progress
from weatherpipe.audit import stage_scope
from weatherpipe.cities import load_cities
from weatherpipe.errors import ConfigError, DeliveryError, SourceError
from weatherpipe.kafka import ensure_topic
from weatherpipe.log import Redactor
from weatherpipe.resources import Resources
from weatherpipe.results import Check, Counts, Metrics, StageResult, new_run_id, utcnow
from weatherpipe.settings import Settings
from weatherpipe.storage import text_or_base64

log = logging.getLogger(__name__)


def make_source(settings: Settings, name: str, resources: Resources | None = None) -> WeatherSource:
    """The weather source called ``name`` (what an entry point builds once and hands to ``run``)."""
    if name == "openweather":
        return OpenWeatherSource(settings, budget=CallBudget(Resources.of(settings, resources).warehouse, settings))
    if name == "open-meteo":
        return OpenMeteoSource(settings)
    if name == "open-meteo-archive":
        return OpenMeteoArchiveSource(settings)
    if name == "replay":
        return ReplaySource(settings)
    if name == "synthetic":
        return SyntheticSource(settings)
    raise ConfigError(f"unknown source {name!r}", hint=f"choose one of: {', '.join(SOURCES)}")


@dataclass
class IngestMetrics(Metrics):
    """``rows_in`` observations fetched, ``rows_out`` published (delivery confirmed), ``rows_rejected`` cities
    that failed (each with its reason)."""

    source: str = ""
    cities: int = 0
    failed_cities: dict[str, str] = field(default_factory=dict)
    source_deadletters: int = 0  # provider bodies kept in the source dead letter
    skipped_cities: list[str] = field(default_factory=list)  # not asked: the provider became unreachable

    def checks(self, counts: Counts) -> list[Check]:
        return [
            Check(
                "ingest: fetched = published",
                counts.rows_in == counts.rows_out,
                f"{counts.rows_in} fetched, {counts.rows_out} published",
            )
        ]


def run(
    settings: Settings,
    *,
    source: str = "replay",
    city_ids: list[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    run_id: str | None = None,
    weather_source: WeatherSource | None = None,
    resources: Resources | None = None,
) -> StageResult[IngestMetrics]:
    run_id = run_id or new_run_id("ingest")
    result = StageResult("ingest", run_id, interval_start=start, interval_end=end, metrics=IngestMetrics())
    res = Resources.of(settings, resources)
    with stage_scope(settings, result):
        _ingest(res, result, source, city_ids, start, end, weather_source)
    return result


def _ingest(
    res: Resources,
    result: StageResult[IngestMetrics],
    source_name: str,
    city_ids: list[str] | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    weather_source: WeatherSource | None,
) -> None:
    settings = res.settings
    cities = load_cities(settings, city_ids)
    source = weather_source or make_source(settings, source_name, res)
    if source.name == "replay" and city_ids is None:  # by default, replay the cities that have a recorded station
        cities = [c for c in cities if c.replay_station and not c.id.startswith(SYNTHETIC_PREFIX)]
    if source.name == "synthetic" and city_ids is None:
        cities = [c for c in cities if c.id.startswith(SYNTHETIC_PREFIX)]
    result.metrics.source, result.metrics.cities = source.name, len(cities)
    ensure_topic(settings.kafka)
    producer = make_producer(settings.kafka)
    redact = Redactor(settings.secrets())
    failures: dict[str, str] = {}
    rejected: list[FetchFailure] = []
    published: set[str] = set()
    unreachable: ProviderUnreachable | None = None
    transient_failures = 0
    ingested_at = utcnow()

    fetched = progress.meter("ingest", "observations")

    def envelopes(items: Iterator[FetchItem]) -> Iterator[Envelope]:
        nonlocal transient_failures, unreachable
        try:
            for n, item in enumerate(items, 1):
                if n % 1000 == 0:
                    fetched.advance(1000)
                if isinstance(item, FetchFailure):
                    failures[item.city_id] = redact(item.reason)
                    transient_failures += item.transient
                    if item.body is not None:
                        rejected.append(item)
                    log.warning("city failed", extra={"city_id": item.city_id, "reason": failures[item.city_id]})
                    continue
                assert isinstance(item, Observation)
                result.rows_in += 1
                published.add(item.city_id)
                yield Envelope.build(
                    source=source.name,
                    city_id=item.city_id,
                    observed_at=item.observed_at,
                    run_id=result.run_id,
                    payload=item.payload,
                    ingested_at=ingested_at,
                    raw_payload=item.raw,
                )
        except ProviderUnreachable as exc:  # stop calling; what was fetched is still published
            unreachable = exc
        fetched.update(completed=result.rows_in, total=result.rows_in)

    items = source.fetch(cities, start, end)
    try:
        delivery = publish(producer, settings.kafka, envelopes(items))
    except DeliveryError:
        result.status = "failed"
        raise
    finally:
        close_producer(producer, timeout_s=5)
        result.metrics.failed_cities = failures
        if rejected:
            result.objects.append(_keep_rejected(res, source.name, result.run_id, rejected, redact))
            result.metrics.source_deadletters = len(rejected)
    result.rows_out = delivery.delivered
    result.rows_rejected = len(failures)
    result.offsets = {str(p): span for p, span in sorted(delivery.offsets.items())}
    if unreachable is not None:
        skipped = [c.id for c in cities if c.id not in published and c.id not in failures]
        result.metrics.skipped_cities = skipped
        result.status = "failed"
        raise ProviderUnreachable(f"{unreachable.message}; {len(skipped)} cities skipped", hint=unreachable.hint)
    if failures:
        result.status = "partial"
    if failures and result.rows_in == 0 and transient_failures == len(failures):
        raise SourceError(f"every city failed with a transient error (first: {next(iter(failures.values()))})")


def _keep_rejected(res: Resources, source: str, run_id: str, rejected: list[FetchFailure], redact: Redactor) -> str:
    """Write the bodies the source rejected, one JSON line each with the reason, to the source dead letter."""
    now = utcnow()
    lines = []
    for failure in rejected:
        text, encoding = text_or_base64(failure.body or b"")
        record = {
            "source": source,
            "city_id": failure.city_id,
            "run_id": run_id,
            "received_at": now.isoformat(),
            "reason": redact(failure.reason),
            "transient": failure.transient,
            "body_encoding": encoding,
            "body": redact(text),
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    key = f"{res.settings.s3.deadletter_prefix}/source={source}/date={now:%Y-%m-%d}/{run_id}.jsonl"
    res.store.put(key, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    return key
