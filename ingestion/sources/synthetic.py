"""A synthetic source for scale: N cities' hourly series derived from the replay year, deterministically, offline.

City ``synth-0000`` … ``synth-NNNN`` takes the recorded series of one replay station (round robin), moved in time by
a few hours per city (rotated within the year, so every city covers the whole year) and perturbed by a small
offset per measure (temperature, dew point, pressure, wind). The payload keeps the replay's shape — strings, ``NA``
kept — so Silver parses it as it parses the replay, and the recorded gaps and anomalies stay. 115 cities make
about one million observations.

``with_synthetic_cities`` writes a cities file — the configured cities plus the synthetic ones, so Silver knows
their attributes — and returns the settings that use it.
"""

from __future__ import annotations

import csv
import datetime as dt
import heapq
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import yaml

from ingestion.sources.base import FetchItem, Observation
from ingestion.sources.replay import dataset_path
from weatherpipe.cities import City, load_cities
from weatherpipe.errors import ConfigError
from weatherpipe.settings import Settings

YEAR_START = dt.datetime(2013, 1, 1, tzinfo=dt.UTC)
YEAR = dt.timedelta(days=365)
PREFIX = "synth-"
SHIFT = dt.timedelta(hours=5)  # per city index: synth-0007 is 35 hours later than its station's record


def synthetic_cities(base: list[City], n: int) -> list[City]:
    """``n`` cities, each tied to a replay station of ``base`` (round robin) and a few kilometres from it."""
    stations = [c for c in base if c.replay_station]
    if not stations:
        raise ConfigError("the synthetic source needs a city with a replay_station", hint="see config/cities.yaml")
    out = []
    for k in range(n):
        station = stations[k % len(stations)]
        variant = k // len(stations)
        out.append(
            City(
                id=f"{PREFIX}{k:04d}",
                name=f"Synthetic {k} ({station.name})",
                country=station.country,
                lat=round(max(-89.9, min(89.9, station.lat + 0.01 * (variant % 50))), 4),
                lon=round(station.lon - 0.01 * (variant // 50 + 1), 4),
                timezone=station.timezone,
                replay_station=station.replay_station,
            )
        )
    return out


def with_synthetic_cities(settings: Settings, n: int) -> Settings:
    """Settings whose cities file is the configured one plus ``n`` synthetic cities (written under the state dir)."""
    if n < 1:
        raise ConfigError(f"--cities must be at least 1, not {n}")
    base = [c for c in load_cities(settings) if not c.id.startswith(PREFIX)]
    path = settings.state_dir / "synthetic" / f"cities-{n}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [c.model_dump(exclude_none=True) for c in base + synthetic_cities(base, n)]
    path.write_text(yaml.safe_dump({"cities": rows}, allow_unicode=True, sort_keys=False))
    paths = settings.paths.model_copy(update={"cities_file": path.resolve()})
    return settings.model_copy(update={"paths": paths})


@cache
def _station_rows(path: Path) -> dict[str, list[tuple[dt.datetime, dict[str, str]]]]:
    """The recorded rows of every station, in time order (read once per process)."""
    rows: dict[str, list[tuple[dt.datetime, dict[str, str]]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                observed = dt.datetime.fromisoformat(row["time_hour"].replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            if YEAR_START <= observed < YEAR_START + YEAR:
                rows.setdefault(row.get("origin", ""), []).append((observed, row))
    return rows


def _offset(value: str, delta: float) -> str:
    if value in ("", "NA"):
        return value
    try:
        return f"{float(value) + delta:.2f}"
    except ValueError:
        return value  # a recorded anomaly stays as recorded


def perturb(row: dict[str, str], observed: dt.datetime, variant: int) -> dict[str, str]:
    """The recorded row as city ``variant`` of its station would have observed it at ``observed``. Pure."""
    out = dict(row)
    out.update(
        year=str(observed.year),
        month=str(observed.month),
        day=str(observed.day),
        hour=str(observed.hour),
        time_hour=observed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        temp=_offset(row.get("temp", "NA"), 0.9 * (variant % 7 - 3)),
        dewp=_offset(row.get("dewp", "NA"), 0.9 * (variant % 7 - 3)),
        pressure=_offset(row.get("pressure", "NA"), 0.8 * (variant % 5 - 2)),
        wind_speed=_offset(row.get("wind_speed", "NA"), 0.5 * (variant % 3)),
    )
    return out


class SyntheticSource:
    name = "synthetic"

    def __init__(self, settings: Settings | None = None, path: Path | None = None) -> None:
        self.path = path or dataset_path()

    def fetch(
        self, cities: list[City], start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> Iterator[FetchItem]:
        """The synthetic cities among ``cities``, hour by hour across cities (as an hourly provider answers them)."""
        recorded = _station_rows(self.path)
        series = []
        for city in cities:
            if not city.id.startswith(PREFIX) or not city.replay_station:
                continue
            variant = int(city.id.removeprefix(PREFIX))
            shift = SHIFT * variant
            rows = recorded.get(city.replay_station, [])
            moved = sorted(
                (YEAR_START + (observed - YEAR_START + shift) % YEAR, i) for i, (observed, _) in enumerate(rows)
            )
            series.append(
                [
                    (at, city.id, variant, rows[i][1])
                    for at, i in moved
                    if (start is None or at >= start) and (end is None or at < end)
                ]
            )
        for at, city_id, variant, row in heapq.merge(*series, key=lambda item: (item[0], item[1])):
            yield Observation(city_id, at, perturb(row, at, variant))
