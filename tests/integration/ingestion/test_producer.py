"""Publishing: every delivery confirmed, within one acknowledgement budget counted from the last send."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

from ingestion.envelope import Envelope
from ingestion.producer import make_producer, publish
from tests.support import derive
from weatherpipe.kafka import ensure_topic
from weatherpipe.settings import Settings


def test_sends_longer_than_the_acknowledgement_budget_are_not_a_failure(settings: Settings) -> None:
    """A backfill's sends take longer than ``delivery_timeout_s``; that budget is for the acknowledgements after
    them (it once counted the sends: a million messages, all delivered, reported as failed)."""
    tight = derive(settings, kafka={"delivery_timeout_s": 0.5})
    ensure_topic(tight.kafka)

    def slow_source() -> Iterator[Envelope]:
        for i in range(20):
            if i == 10:
                threading.Event().wait(1.0)  # the source is slower than the budget (a provider, a big file)
            yield Envelope.build(
                source="replay",
                city_id=f"c{i}",
                observed_at=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
                run_id="t",
                payload={"i": i},
            )

    producer = make_producer(tight.kafka)
    try:
        delivery = publish(producer, tight.kafka, slow_source())
    finally:
        producer.close()
    assert delivery.delivered == 20 and delivery.failed == 0
