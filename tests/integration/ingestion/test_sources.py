"""Ingestion: every source path against a local fake of the providers, published through the real broker."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time

import pytest

from ingestion import ingest
from ingestion.budget import CallBudget
from ingestion.envelope import Envelope, event_id
from tests.support import consume_all, derive
from tests.support.fake_weather_api import API_KEY, OM_400, OW_404, OW_429, FakeWeatherApi, Reply
from weatherpipe import db
from weatherpipe.errors import BudgetExceeded, ConfigError, ServiceUnavailable, SourceAuthError, SourceError
from weatherpipe.log import JsonFormatter, RedactingFilter
from weatherpipe.resources import Warehouse
from weatherpipe.settings import Settings

THREE = ["paris", "london", "berlin"]


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old)


def envelopes(settings: Settings, expected: int | None = None) -> list[Envelope]:
    return [Envelope.from_bytes(v) for _, v in consume_all(settings, expected)]


def audit(settings: Settings, run_id: str) -> tuple:
    with db.connect(settings.postgres.admin) as conn:
        return conn.execute(
            f'select status, rows_in, rows_out, rows_rejected, details from "{settings.postgres.ops_schema}"'
            ".pipeline_runs where run_id = %s and stage = 'ingest'",
            (run_id,),
        ).fetchone()


# -- replay ---------------------------------------------------------------------------------------------------
def test_replay_publishes_window_with_original_timestamps_and_stable_ids(settings: Settings) -> None:
    start, end = dt.datetime(2013, 1, 1, 6, tzinfo=dt.UTC), dt.datetime(2013, 1, 2, 6, tzinfo=dt.UTC)
    recorded = _recorded_rows(start, end)
    assert 60 < recorded < 72  # 3 stations x 24 hours, less the dataset's real gaps
    first = ingest.run(settings, source="replay", start=start, end=end, run_id="replay-1")
    assert first.status == "success"  # by default the replay takes the cities that have a recorded station
    assert first.rows_in == first.rows_out == recorded
    published = envelopes(settings, recorded)
    assert len(published) == recorded
    assert {e.city_id for e in published} == {"nyc-jfk", "nyc-lga", "nyc-ewr"}
    assert min(e.observed_at for e in published) == start
    assert max(e.observed_at for e in published) == end - dt.timedelta(hours=1)
    jfk = next(e for e in published if e.city_id == "nyc-jfk" and e.observed_at == start)
    assert jfk.data()["origin"] == "JFK" and jfk.data()["time_hour"] == "2013-01-01T06:00:00Z"
    assert jfk.event_id == event_id("replay", "nyc-jfk", start)

    second = ingest.run(settings, source="replay", city_ids=["nyc-jfk"], start=start, end=end, run_id="replay-2")
    assert second.status == "success" and second.rows_out == _recorded_rows(start, end, "JFK")
    again = envelopes(settings, recorded + second.rows_out)
    ids_by_run: dict[str, set[str]] = {}
    for e in again:
        ids_by_run.setdefault(e.run_id, set()).add(e.event_id)
    assert ids_by_run["replay-2"] <= ids_by_run["replay-1"]  # the same observation keeps its identity
    assert audit(settings, "replay-1")[:4] == ("success", recorded, recorded, 0)
    asked = ingest.run(settings, source="replay", city_ids=["paris", "nyc-lga"], start=start, end=end)
    assert asked.status == "partial"  # a city asked for explicitly without a station is reported, not hidden
    assert asked.metrics.failed_cities == {"paris": "no replay_station configured for this city"}


def _recorded_rows(start: dt.datetime, end: dt.datetime, station: str | None = None) -> int:
    import csv

    from ingestion.sources.replay import dataset_path

    with dataset_path().open() as handle:
        return sum(
            1
            for row in csv.DictReader(handle)
            if start <= dt.datetime.fromisoformat(row["time_hour"].replace("Z", "+00:00")) < end
            and (station is None or row["origin"] == station)
        )


def test_message_key_is_city_id_and_envelope_schema(settings: Settings) -> None:
    start = dt.datetime(2013, 2, 12, 0, tzinfo=dt.UTC)
    result = ingest.run(
        settings, source="replay", city_ids=["nyc-ewr"], start=start, end=start + dt.timedelta(hours=12)
    )
    records = consume_all(settings, result.rows_out)
    assert len(records) == result.rows_out > 0 and {k for k, _ in records} == {b"nyc-ewr"}
    body = json.loads(records[0][1])
    assert set(body) == {
        "schema_version",
        "event_id",
        "source",
        "city_id",
        "observed_at",
        "ingested_at",
        "run_id",
        "payload",
    }
    assert body["schema_version"] == 1 and body["observed_at"].endswith("Z")


# -- OpenWeather ----------------------------------------------------------------------------------------------
def test_openweather_success_and_one_city_not_found(api_settings: Settings, fake: FakeWeatherApi) -> None:
    fake.queue("london", Reply(404, OW_404))
    result = ingest.run(api_settings, source="openweather", city_ids=THREE, run_id="ow-404")
    assert result.status == "partial"
    assert result.rows_out == 2 and result.metrics.failed_cities == {"london": "OpenWeather HTTP 404: city not found"}
    got = envelopes(api_settings, 2)
    assert sorted(e.city_id for e in got) == ["berlin", "paris"]
    paris = next(e for e in got if e.city_id == "paris")
    assert paris.data()["main"]["temp"] == 283.15 and paris.data()["cod"] == 200  # raw, untouched
    assert paris.observed_at == fake.now
    assert ("id", "2988507") in {(k, v) for _, q in fake.requests for k, v in q.items()}  # by city id


def test_openweather_bad_key_stops_with_one_clear_line(
    api_settings: Settings, fake: FakeWeatherApi, captured_logs: io.StringIO
) -> None:
    fake.api_key = "another-key"
    with pytest.raises(SourceAuthError) as err:
        ingest.run(api_settings, source="openweather", city_ids=THREE, run_id="ow-401")
    text = str(err.value)
    assert "401" in text and "Invalid API key" in text and "\n" not in text
    assert API_KEY not in text and API_KEY not in captured_logs.getvalue()
    assert fake.calls("/data/2.5/weather") == 1  # terminal: no retry, no other city tried
    assert audit(api_settings, "ow-401")[0] == "failed"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(429, OW_429, {"Retry-After": "0"}),
        Reply(429, OW_429),
        Reply(500, {"cod": "500", "message": "Internal server error"}),
        Reply(502, b"<html>Bad Gateway</html>"),
        Reply(503, b""),
        Reply(200, None, delay_s=1.0),  # slower than the 0.5 s timeout
    ],
)
def test_openweather_transient_errors_are_retried(api_settings: Settings, fake: FakeWeatherApi, reply: Reply) -> None:
    fake.queue("paris", reply, reply)
    result = ingest.run(api_settings, source="openweather", city_ids=["paris"])
    assert result.status == "success" and result.rows_out == 1
    assert fake.calls("/data/2.5/weather") == 3


def test_openweather_retry_after_is_honoured(api_settings: Settings, fake: FakeWeatherApi) -> None:
    slow = derive(api_settings, api={"backoff_max_s": 5.0})
    fake.queue("paris", Reply(429, OW_429, {"Retry-After": "1"}))
    t0 = time.monotonic()
    ingest.run(slow, source="openweather", city_ids=["paris"])
    assert time.monotonic() - t0 >= 1.0


def test_openweather_persistent_5xx_for_all_cities_is_transient_failure(
    api_settings: Settings, fake: FakeWeatherApi
) -> None:
    for city in THREE:
        fake.queue(city, *[Reply(503, b"")] * 4)
    with pytest.raises(SourceError) as err:
        ingest.run(api_settings, source="openweather", city_ids=THREE, run_id="ow-503")
    assert err.value.transient and "HTTP 503" in str(err.value)
    assert fake.calls("/data/2.5/weather") == 12  # 4 bounded attempts per city
    assert audit(api_settings, "ow-503")[0] == "failed"


@pytest.mark.parametrize(
    "reply, reason",
    [
        (Reply(200, b"{not json"), "is not JSON"),
        (Reply(200, {"cod": 200, "name": "Paris", "main": {"humidity": 50}}), "malformed"),
    ],
)
def test_openweather_bad_bodies_fail_that_city_only(
    api_settings: Settings, fake: FakeWeatherApi, reply: Reply, reason: str
) -> None:
    fake.queue("paris", reply)
    result = ingest.run(api_settings, source="openweather", city_ids=THREE)
    assert result.status == "partial" and result.rows_out == 2
    assert reason in result.metrics.failed_cities["paris"]


def test_connection_refused_is_transient(api_settings: Settings) -> None:
    dead = derive(api_settings, api={"openweather_base_url": "http://127.0.0.1:9", "max_attempts": 2})
    with pytest.raises(SourceError, match="cannot connect"):
        ingest.run(dead, source="openweather", city_ids=["paris"])


def test_missing_key_is_a_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="needs an API key"):
        ingest.run(derive(settings, api={"openweather_api_key": None}), source="openweather")


def test_canary_key_never_reaches_logs_errors_or_messages(
    api_settings: Settings, fake: FakeWeatherApi, captured_logs: io.StringIO
) -> None:
    fake.queue("paris", Reply(500, OW_404), Reply(500, OW_404))
    fake.queue("london", Reply(404, OW_404))
    result = ingest.run(api_settings, source="openweather", city_ids=THREE)
    assert result.rows_out == 2
    raw = b"".join(v for _, v in consume_all(api_settings, 2))
    assert API_KEY.encode() not in raw
    assert API_KEY not in json.dumps(result.to_dict(), default=str)
    assert API_KEY not in captured_logs.getvalue()
    assert "retrying" in captured_logs.getvalue()  # the retry path did log


def test_budget_refuses_to_overspend_before_calling(api_settings: Settings, fake: FakeWeatherApi) -> None:
    tight = derive(api_settings, api={"monthly_call_budget": 4})
    assert ingest.run(tight, source="openweather", city_ids=THREE).rows_out == 3
    assert CallBudget(Warehouse(tight.postgres), tight).used() == 3
    with pytest.raises(BudgetExceeded, match=r"exceed the monthly budget of 4 \(3 already used"):
        ingest.run(tight, source="openweather", city_ids=["paris", "rome"])
    assert fake.calls("/data/2.5/weather") == 3  # the refused run made no call
    assert ingest.run(tight, source="openweather", city_ids=["rome"]).rows_out == 1


# -- Open-Meteo -----------------------------------------------------------------------------------------------
def test_open_meteo_current_many_cities_in_one_call(api_settings: Settings, fake: FakeWeatherApi) -> None:
    result = ingest.run(api_settings, source="open-meteo", city_ids=[*THREE, "tokyo", "dakar"])
    assert result.status == "success" and result.rows_out == 5
    assert fake.calls("/v1/forecast") == 1
    got = envelopes(api_settings, 5)
    assert {e.source for e in got} == {"open-meteo"}
    assert all(e.data()["current_units"]["temperature_2m"] == "°C" for e in got)


def test_open_meteo_error_reason_is_reported(api_settings: Settings, fake: FakeWeatherApi) -> None:
    fake.queue("paris", Reply(400, OM_400))
    result = ingest.run(api_settings, source="open-meteo", city_ids=THREE)
    assert result.rows_out == 0 and result.status == "partial"
    assert all("invalid String value" in r for r in result.metrics.failed_cities.values())


def test_open_meteo_archive_backfill(api_settings: Settings, fake: FakeWeatherApi) -> None:
    start, end = dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 3, tzinfo=dt.UTC)
    result = ingest.run(api_settings, source="open-meteo-archive", city_ids=["paris"], start=start, end=end)
    assert result.rows_out == 48
    got = sorted(envelopes(api_settings, 48), key=lambda e: e.observed_at)
    assert got[0].observed_at == start and got[-1].observed_at == end - dt.timedelta(hours=1)
    assert got[5].data()["hourly"]["time"] == "2024-03-01T05:00"
    assert got[5].data()["hourly_units"]["temperature_2m"] == "°C"


# -- broker ---------------------------------------------------------------------------------------------------
def test_broker_unreachable_is_a_clear_transient_error(settings: Settings) -> None:
    down = derive(settings, kafka={"bootstrap_servers": "127.0.0.1:9", "request_timeout_ms": 2000})
    start = dt.datetime(2013, 1, 1, 6, tzinfo=dt.UTC)
    with pytest.raises(ServiceUnavailable) as err:
        ingest.run(down, source="replay", city_ids=["nyc-jfk"], start=start, end=start + dt.timedelta(hours=2))
    assert err.value.transient and "127.0.0.1:9" in str(err.value)
