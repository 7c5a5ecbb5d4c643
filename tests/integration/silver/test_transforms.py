"""Unit tests of the pure Silver transforms on tiny frames (local Spark, no I/O)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from spark_jobs import schemas
from spark_jobs.expectations import Expectation, evaluate, rule_counts, split
from spark_jobs.transforms import (
    INCH_TO_MM,
    MILE_TO_M,
    MPH_TO_MS,
    attach_cities,
    deduplicate,
    f_to_c,
    k_to_c,
    to_canonical,
)
from tests.support.fake_weather_api import open_meteo_archive, open_meteo_current, openweather_payload
from weatherpipe.cities import City

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark(local_stack: Any) -> Any:
    """Pure transforms on tiny frames need one deployment, not the cluster too: the stack's Connect server."""
    from spark_jobs.session import release, spark_session

    session = spark_session(local_stack)
    yield session
    release(session)


T = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
PARIS = City(id="paris", name="Paris", country="FR", lat=48.85, lon=2.35, timezone="Europe/Paris")
REPLAY_ROW = {
    "origin": "EWR",
    "year": "2013",
    "month": "2",
    "day": "12",
    "hour": "3",
    "temp": "39.02",
    "dewp": "26.96",
    "humid": "61.63",
    "wind_dir": "260",
    "wind_speed": "1048.36058",
    "wind_gust": "NA",
    "precip": "0.01",
    "pressure": "1008.3",
    "visib": "10",
    "time_hour": "2013-02-12T08:00:00Z",
}


def bronze_row(
    source: str,
    payload: dict | str,
    *,
    city: str = "paris",
    observed: dt.datetime = T,
    ingested: dt.datetime = T,
    offset: int = 0,
    event: str | None = None,
) -> tuple:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return (
        event or f"e-{city}-{observed:%H%M}-{offset}",
        1,
        source,
        city,
        observed,
        ingested,
        "run",
        text,
        "topic",
        0,
        offset,
        None,
        T,
        "bronze/key.parquet",
    )


def canonical(spark, rows: list[tuple]) -> dict:
    df = to_canonical(spark.createDataFrame(rows, schemas.BRONZE))
    return {(r["source"], r["city_id"], r["kafka_offset"]): r.asDict() for r in df.collect()}


def test_exact_unit_conversions(spark) -> None:
    from pyspark.sql import functions as F

    row = (
        spark.createDataFrame([(32.0, 212.0, 273.15, -40.0)], "f1 double, f2 double, k double, f3 double")
        .select(
            f_to_c(F.col("f1")).alias("c1"),
            f_to_c(F.col("f2")).alias("c2"),
            k_to_c(F.col("k")).alias("c3"),
            f_to_c(F.col("f3")).alias("c4"),
        )
        .collect()[0]
    )
    assert (row.c1, row.c2, row.c3, row.c4) == (0.0, 100.0, 0.0, -40.0)
    assert (MPH_TO_MS, INCH_TO_MM, MILE_TO_M) == (0.44704, 25.4, 1609.344)


def test_openweather_payload_in_kelvin(spark) -> None:
    full = openweather_payload(PARIS, T, temp_k=283.15)
    bare = {k: v for k, v in full.items() if k not in {"rain", "visibility"}}
    bare["wind"] = {"speed": 3.1, "deg": 90}
    snow_only = {**bare, "snow": {"1h": 0.5}}
    out = canonical(
        spark,
        [
            bronze_row("openweather", full),
            bronze_row("openweather", bare, offset=1),
            bronze_row("openweather", snow_only, offset=2),
        ],
    )
    a, b, c = out[("openweather", "paris", 0)], out[("openweather", "paris", 1)], out[("openweather", "paris", 2)]
    assert a["temperature_c"] == pytest.approx(10.0) and a["feels_like_c"] == pytest.approx(8.8)
    assert (a["pressure_hpa"], a["humidity_pct"], a["wind_speed_ms"], a["wind_gust_ms"]) == (1015, 64, 4.63, 9.26)
    assert (a["rain_1h_mm"], a["precipitation_1h_mm"], a["visibility_m"]) == (3.16, 3.16, 10000)
    assert (a["weather_code"], a["weather_code_system"], a["weather_main"]) == (501, "owm", "Rain")
    assert a["sunrise_at"] == (T - dt.timedelta(seconds=20000)).replace(tzinfo=None)  # Spark returns naive UTC
    assert a["payload_parsed"] == 1
    assert (b["rain_1h_mm"], b["precipitation_1h_mm"], b["wind_gust_ms"], b["visibility_m"]) == (None,) * 4
    assert (c["snow_1h_mm"], c["precipitation_1h_mm"]) == (0.5, 0.5)


def test_open_meteo_current_and_archive_units(spark) -> None:
    current = open_meteo_current(PARIS, T)
    fahrenheit = json.loads(json.dumps(current))
    fahrenheit["current_units"]["temperature_2m"] = "°F"
    fahrenheit["current"]["temperature_2m"] = 50.0
    archive = open_meteo_archive(PARIS, T.date(), T.date())
    row = {k: v for k, v in archive.items() if k != "hourly"} | {
        "hourly": {k: v[3] for k, v in archive["hourly"].items()} | {"precipitation": 0.4}
    }
    out = canonical(
        spark,
        [
            bronze_row("open-meteo", current),
            bronze_row("open-meteo", fahrenheit, offset=1),
            bronze_row("open-meteo-archive", row, offset=2),
        ],
    )
    a = out[("open-meteo", "paris", 0)]
    assert a["temperature_c"] == 12.4 and a["wind_speed_ms"] == pytest.approx(5.0)  # 18 km/h
    assert a["wind_gust_ms"] == pytest.approx(10.0)
    # current values cover `interval` (900 s): stored with it, never as one-hour amounts
    assert (a["precipitation_mm"], a["precipitation_interval_s"]) == (0.2, 900)
    assert (a["precipitation_1h_mm"], a["rain_1h_mm"], a["snow_1h_mm"]) == (None, None, None)
    assert (a["weather_code"], a["weather_code_system"], a["weather_main"]) == (61, "wmo", "Rain")
    assert out[("open-meteo", "paris", 1)]["temperature_c"] == pytest.approx(10.0)
    c = out[("open-meteo-archive", "paris", 2)]
    assert (c["precipitation_1h_mm"], c["precipitation_mm"], c["precipitation_interval_s"]) == (0.4, 0.4, 3600)
    assert c["temperature_c"] == 6.5 and c["visibility_m"] == 24140.0 and c["wind_speed_ms"] == pytest.approx(3.0)


def test_replay_imperial_with_na_and_the_real_anomaly(spark) -> None:
    out = canonical(spark, [bronze_row("replay", REPLAY_ROW, city="nyc-ewr")])
    r = out[("replay", "nyc-ewr", 0)]
    assert r["temperature_c"] == pytest.approx((39.02 - 32) * 5 / 9)
    assert r["wind_speed_ms"] == pytest.approx(1048.36058 * 0.44704)  # 468.7 m/s: physically impossible
    assert r["wind_gust_ms"] is None and r["precipitation_1h_mm"] == pytest.approx(0.254)
    assert (r["precipitation_mm"], r["precipitation_interval_s"]) == (r["precipitation_1h_mm"], 3600)
    assert r["visibility_m"] == pytest.approx(16093.44) and r["pressure_hpa"] == 1008.3


def test_unparseable_payload_is_kept_and_flagged(spark) -> None:
    out = canonical(
        spark,
        [
            bronze_row("openweather", {"cod": "404", "message": "city not found"}),
            bronze_row("replay", "[1, 2]", offset=1),
        ],
    )
    assert len(out) == 2
    assert {r["payload_parsed"] for r in out.values()} == {0}


def test_expectations_are_null_safe_and_split_reconciles(spark) -> None:
    rules = [
        Expectation(name="temp_range", predicate="temperature_c between -90 and 60", action="drop"),
        Expectation(name="humid_range", predicate="humidity_pct is null or humidity_pct <= 100", action="drop"),
        Expectation(name="has_wind", predicate="wind_speed_ms is not null", action="warn"),
    ]
    df = spark.createDataFrame(
        [(1, 20.0, 50.0, 1.0), (2, None, 50.0, 1.0), (3, 99.0, 150.0, None), (4, 10.0, None, None)],
        "id int, temperature_c double, humidity_pct double, wind_speed_ms double",
    )
    ev = evaluate(df, rules)
    by_id = {r.id: r for r in ev.collect()}
    assert by_id[1].failed_rules == [] and by_id[2].failed_rules == ["temp_range"]  # NULL counts as broken
    assert by_id[3].failed_rules == ["temp_range", "humid_range"] and by_id[3].warned_rules == ["has_wind"]
    assert rule_counts(ev, rules) == {"temp_range": 2, "humid_range": 1, "has_wind": 2}
    clean, quarantined = split(ev)
    assert clean.count() + quarantined.count() == df.count()
    assert sorted(r.id for r in clean.collect()) == [1, 4]


def test_deduplicate_keeps_latest_ingestion(spark) -> None:
    rows = [
        bronze_row("replay", REPLAY_ROW, city="nyc-ewr", ingested=T + dt.timedelta(minutes=m), offset=o)
        for m, o in [(0, 0), (5, 1), (2, 2)]
    ]
    other = bronze_row("replay", REPLAY_ROW, city="nyc-jfk", offset=3)
    out = deduplicate(to_canonical(spark.createDataFrame([*rows, other], schemas.BRONZE))).collect()
    assert sorted((r.city_id, r.kafka_offset) for r in out) == [("nyc-ewr", 1), ("nyc-jfk", 3)]


def test_utc_offset_is_the_citys_at_the_observation(spark) -> None:
    """Replay and Open-Meteo (asked in GMT) report no city offset: it comes from the city's zone, DST included;
    OpenWeather's own `timezone` is kept."""
    cities = spark.createDataFrame(
        [
            ("nyc-ewr", "Newark", "US", 40.69, -74.17, "America/New_York"),
            ("paris", "Paris", "FR", 48.85, 2.35, "Europe/Paris"),
        ],
        schemas.CITIES,
    )
    january, july = dt.datetime(2013, 1, 15, 12, tzinfo=dt.UTC), dt.datetime(2013, 7, 15, 12, tzinfo=dt.UTC)
    rows = [
        bronze_row("replay", REPLAY_ROW, city="nyc-ewr", observed=january),
        bronze_row("replay", REPLAY_ROW, city="nyc-ewr", observed=july, offset=1),
        bronze_row("open-meteo", open_meteo_current(PARIS, july), observed=july, offset=2),
        bronze_row("openweather", openweather_payload(PARIS, january), offset=3),
    ]
    out = attach_cities(to_canonical(spark.createDataFrame(rows, schemas.BRONZE)), cities)
    offsets = {r["kafka_offset"]: r["tz_offset_s"] for r in out.collect()}
    assert offsets == {0: -18000, 1: -14400, 2: 7200, 3: 3600}
