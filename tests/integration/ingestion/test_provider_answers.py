"""Provider answers as they really come (shaped from the providers' documentation and issue trackers): each bad
value is that city's failure, kept with its reason; budgets, Retry-After and dead providers are honoured."""

from __future__ import annotations

import json
import time

import pytest

from ingestion import ingest
from ingestion.budget import CallBudget
from ingestion.envelope import Envelope
from ingestion.sources.base import ProviderUnreachable
from tests.support import consume_all, derive, query
from tests.support.fake_weather_api import (
    API_KEY,
    OW_404,
    OW_429,
    FakeWeatherApi,
    Reply,
    many_cities,
    open_meteo_current,
    write_cities,
)
from weatherpipe.cities import load_cities
from weatherpipe.errors import ConfigError
from weatherpipe.resources import Warehouse
from weatherpipe.settings import Settings, load_settings
from weatherpipe.storage import ObjectStore

THREE = ["paris", "london", "berlin"]


def published(settings: Settings, expected: int) -> dict[str, Envelope]:
    return {e.city_id: e for e in (Envelope.from_bytes(v) for _, v in consume_all(settings, expected))}


def source_deadletters(settings: Settings) -> list[dict]:
    store = ObjectStore(settings.s3)
    lines: list[dict] = []
    for obj in store.list(f"{settings.s3.deadletter_prefix}/source="):
        lines += [json.loads(line) for line in store.get(obj.key).decode().splitlines() if line]
    return lines


def test_openweather_is_always_asked_for_standard_units(
    api_settings: Settings, fake: FakeWeatherApi, monkeypatch
) -> None:
    """Silver converts from Kelvin: a `units` setting that asked for °C or °F corrupted every row. It is gone."""
    ingest.run(api_settings, source="openweather", city_ids=["paris"])
    assert [q.get("units") for _, q in fake.requests] == ["standard"]
    monkeypatch.setenv("WEATHERPIPE_API__UNITS", "metric")
    with pytest.raises(ConfigError, match=r"api\.units"):
        load_settings(_env_file=None)


def test_a_timestamp_in_milliseconds_fails_that_city_only(api_settings: Settings, fake: FakeWeatherApi) -> None:
    body = fake.openweather("london")
    body["dt"] *= 1000
    fake.queue("london", Reply(200, json.dumps(body).encode()))
    result = ingest.run(api_settings, source="openweather", city_ids=THREE)
    assert result.status == "partial" and result.rows_out == 2
    assert "out of range for a Unix time in seconds" in result.metrics.failed_cities["london"]
    assert set(published(api_settings, 2)) == {"paris", "berlin"}
    kept = source_deadletters(api_settings)
    assert [(d["city_id"], json.loads(d["body"])["dt"]) for d in kept] == [("london", body["dt"])]


def test_every_attempt_is_paid_from_the_budget(api_settings: Settings, fake: FakeWeatherApi) -> None:
    budgeted = derive(api_settings, api={"monthly_call_budget": 10})
    fake.queue("paris", Reply(429, OW_429, {"Retry-After": "0"}), Reply(503, b""))
    assert ingest.run(budgeted, source="openweather", city_ids=["paris"]).rows_out == 1
    assert fake.calls("/data/2.5/weather") == 3
    assert CallBudget(Warehouse(budgeted.postgres), budgeted).used() == 3  # one call per attempt, not one per city


def test_no_attempt_is_started_that_the_budget_cannot_pay(api_settings: Settings, fake: FakeWeatherApi) -> None:
    tight = derive(api_settings, api={"monthly_call_budget": 3})
    fake.queue("paris", *[Reply(503, b"")] * 3)
    result = ingest.run(tight, source="openweather", city_ids=["paris", "london"])
    assert fake.calls("/data/2.5/weather") == 3 and CallBudget(Warehouse(tight.postgres), tight).used() == 3
    assert result.rows_out == 0 and result.status == "partial"
    assert set(result.metrics.failed_cities) == {"paris", "london"}
    assert "not fetched" in result.metrics.failed_cities["london"]


def test_retry_after_is_honoured_beyond_the_backoff_ceiling(api_settings: Settings, fake: FakeWeatherApi) -> None:
    fake.queue("paris", Reply(429, OW_429, {"Retry-After": "1"}))
    started = time.monotonic()
    assert ingest.run(api_settings, source="openweather", city_ids=["paris"]).rows_out == 1
    assert time.monotonic() - started >= 1.0  # asked for 1 s; the backoff ceiling is 0.05 s
    assert fake.calls("/data/2.5/weather") == 2


def test_a_retry_after_longer_than_allowed_fails_the_city_without_calling_again(
    api_settings: Settings, fake: FakeWeatherApi
) -> None:
    patient = derive(api_settings, api={"max_retry_after_s": 5})
    fake.queue("paris", Reply(429, OW_429, {"Retry-After": "120"}))
    result = ingest.run(patient, source="openweather", city_ids=["paris", "london"])
    assert fake.calls("/data/2.5/weather") == 2  # paris once, london once
    assert result.rows_out == 1 and "HTTP 429" in result.metrics.failed_cities["paris"]


def test_one_bad_token_in_a_batch_fails_only_its_city(api_settings: Settings, fake: FakeWeatherApi) -> None:
    """Open-Meteo has answered multi-location requests with a bare `nan`: the batch is asked again one city at a
    time, and only the city whose own answer is bad fails (its body kept with the reason)."""
    cities = load_cities(api_settings, ["paris", "london", "berlin", "tokyo", "dakar"])
    items = [json.dumps(open_meteo_current(c, fake.now)) for c in cities]
    items[1] = items[1].replace('"temperature_2m": 12.4', '"temperature_2m": nan')
    fake.queue("paris", Reply(200, ("[" + ",".join(items) + "]").encode()))
    fake.queue("london", Reply(200, items[1].encode()))
    result = ingest.run(api_settings, source="open-meteo", city_ids=[c.id for c in cities])
    assert result.rows_out == 4 and list(result.metrics.failed_cities) == ["london"]
    assert "not JSON" in result.metrics.failed_cities["london"]
    assert fake.calls("/v1/forecast") == 1 + 5
    assert [d["city_id"] for d in source_deadletters(api_settings)] == ["london"]
    assert "nan" in source_deadletters(api_settings)[0]["body"]


def test_the_envelope_carries_the_payload_bytes_as_received(api_settings: Settings, fake: FakeWeatherApi) -> None:
    """No re-encoding: key order, spacing, number spelling and escapes stay as the provider sent them."""
    raw = json.dumps(fake.openweather("paris"), indent=1, ensure_ascii=True).replace(
        '"temp": 283.15', '"temp": 283.150'
    )
    fake.queue("paris", Reply(200, raw.encode()))
    cities = load_cities(api_settings, ["tokyo", "dakar"])
    batch = "[" + ", ".join(json.dumps(open_meteo_current(c, fake.now), indent=2) for c in cities) + "]"
    fake.queue("tokyo", Reply(200, batch.encode()))
    ingest.run(api_settings, source="openweather", city_ids=["paris"])
    ingest.run(api_settings, source="open-meteo", city_ids=["tokyo", "dakar"])
    got = published(api_settings, 3)
    assert bytes(got["paris"].payload) == raw.encode()
    assert bytes(got["dakar"].payload) == json.dumps(open_meteo_current(cities[1], fake.now), indent=2).encode()


def test_provider_error_text_is_redacted_everywhere(api_settings: Settings, fake: FakeWeatherApi) -> None:
    fake.queue("london", Reply(404, {**OW_404, "message": f"city not found for appid {API_KEY}"}))
    result = ingest.run(api_settings, source="openweather", city_ids=THREE, run_id="redact-1")
    assert "city not found" in result.metrics.failed_cities["london"]
    assert API_KEY not in json.dumps(result.to_dict(), default=str)
    stored = query(
        api_settings, "select details::text, coalesce(error, '') from {o}.pipeline_runs where run_id = 'redact-1'"
    )
    assert stored and API_KEY not in "".join(stored[0])


def test_an_unreachable_provider_stops_after_a_few_connection_failures(api_settings: Settings) -> None:
    """No route / refused: after `circuit_breaker_failures` failures in a row the stage stops calling and fails with
    one line, every remaining city reported as skipped (before: 5 attempts per city, city after city)."""
    dead = derive(api_settings, api={"openweather_base_url": "http://127.0.0.1:9", "max_attempts": 5})
    cities = [c.id for c in load_cities(api_settings)]
    with pytest.raises(ProviderUnreachable) as err:
        ingest.run(dead, source="openweather", run_id="dead-1")
    text = str(err.value)
    assert "\n" not in text and "unreachable at 127.0.0.1:9 (3 connection failures in a row)" in text
    assert f"{len(cities)} cities skipped" in text
    details = query(api_settings, "select status, details from {o}.pipeline_runs where run_id = 'dead-1'")[0]
    assert details[0] == "failed" and details[1]["skipped_cities"] == cities


def test_a_hundred_cities_from_each_provider(api_settings: Settings, tmp_path) -> None:
    """Scale as the hourly bench runs it: 100 distinct cities, one OpenWeather call each, and the same cities through
    Open-Meteo's multi-location endpoint in batches of 50; every city published once, none failed."""
    hundred = many_cities(100, load_cities(api_settings))
    assert len({c.id for c in hundred}) == len({(c.lat, c.lon) for c in hundred}) == 100
    wide = derive(
        api_settings,
        paths={"cities_file": write_cities(tmp_path / "cities.yaml", hundred)},
        api={"calls_per_minute": 100_000},  # the fake has no rate limit; the real free plan allows 60 a minute
    )
    with FakeWeatherApi(hundred) as fake:
        fake.api_key = API_KEY
        wide = derive(wide, api={"openweather_base_url": fake.url, "open_meteo_base_url": fake.url})
        by_openweather = ingest.run(wide, source="openweather")
        by_open_meteo = ingest.run(wide, source="open-meteo")
        assert fake.calls("/data/2.5/weather") == 100 and fake.calls("/v1/forecast") == 2
    for result in (by_openweather, by_open_meteo):
        assert result.rows_out == 100 and not result.metrics.failed_cities, result.metrics.failed_cities
    got = published(wide, 200)
    assert set(got) == {c.id for c in hundred}
