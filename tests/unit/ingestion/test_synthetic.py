"""The synthetic source: N cities' hourly series from the replay year, deterministic, in the replay's shape."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from ingestion.sources.base import Observation
from ingestion.sources.synthetic import YEAR, YEAR_START, SyntheticSource, synthetic_cities, with_synthetic_cities
from weatherpipe.cities import load_cities
from weatherpipe.settings import Settings


def _observations(cities: list, **window: dt.datetime) -> list[Observation]:
    items = list(SyntheticSource().fetch(cities, **window))
    assert all(isinstance(i, Observation) for i in items)
    return items  # type: ignore[return-value]


def test_each_city_is_a_whole_year_moved_and_perturbed(tmp_path: Path) -> None:
    base = load_cities(Settings())
    cities = synthetic_cities(base, 6)
    assert [c.id for c in cities] == [f"synth-{k:04d}" for k in range(6)]
    assert [c.replay_station for c in cities] == ["JFK", "LGA", "EWR"] * 2
    assert len({(c.lat, c.lon) for c in cities}) == 6
    items = _observations(cities)
    per_city = Counter(o.city_id for o in items)
    assert len(per_city) == 6 and min(per_city.values()) > 8000
    assert all(YEAR_START <= o.observed_at < YEAR_START + YEAR for o in items)
    times = [(o.observed_at, o.city_id) for o in items]
    assert times == sorted(times)  # hour by hour across cities
    jfk0 = {o.observed_at: o.payload for o in items if o.city_id == "synth-0000"}
    jfk3 = {o.observed_at: o.payload for o in items if o.city_id == "synth-0003"}
    moved = next(t for t in jfk0 if t + dt.timedelta(hours=15) in jfk3 and jfk0[t]["temp"] != "NA")
    later = jfk3[moved + dt.timedelta(hours=15)]  # synth-0003 is synth-0000 15 hours later, and 2.7 °F warmer
    assert float(later["temp"]) - float(jfk0[moved]["temp"]) == pytest.approx(2.7)
    assert later["time_hour"] == (moved + dt.timedelta(hours=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(later) == set(jfk0[moved])  # the replay's shape
    assert _observations(cities) == items  # deterministic


def test_a_window_and_the_cities_file(tmp_path: Path) -> None:
    settings = Settings().model_copy(update={"stack": Settings().stack.model_copy(update={"state_dir": tmp_path})})
    synthetic = with_synthetic_cities(settings, 4)
    cities = load_cities(synthetic)
    assert [c.id for c in cities if c.id.startswith("synth-")] == [f"synth-{k:04d}" for k in range(4)]
    assert len(cities) == len(load_cities(settings)) + 4  # the configured cities stay known
    start = dt.datetime(2013, 6, 1, tzinfo=dt.UTC)
    items = _observations(cities, start=start, end=start + dt.timedelta(days=1))
    assert {o.city_id for o in items} == {c.id for c in cities if c.id.startswith("synth-")}
    assert 4 * 20 <= len(items) <= 4 * 24
