"""Builds ``hostile_inputs.jsonl``: malformed and hostile Kafka messages, each labelled with where it must end up.

    python -m tests.support.corpus.build_corpus     # rewrites the committed corpus (deterministic)

expect: ``deadletter`` (not a valid envelope: bronze dead-letters it), ``quarantine`` (a valid envelope whose data
breaks a Silver rule), ``clean`` (odd but valid), ``duplicate`` (the same event again: Silver deduplicates it).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

from ingestion.envelope import Envelope, event_id

OUT = Path(__file__).with_name("hostile_inputs.jsonl")
BASE_TIME = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)


def _payload(temp_k: Any = 291.15, **main: Any) -> dict[str, Any]:
    return {
        "coord": {"lon": 2.35, "lat": 48.85},
        "weather": [{"id": 800, "main": "Clear", "description": "clear sky"}],
        "main": {"temp": temp_k, "feels_like": 290.0, "pressure": 1012, "humidity": 55, **main},
        "wind": {"speed": 3.6, "deg": 200},
        "clouds": {"all": 0},
        "dt": 1590969600,
        "timezone": 7200,
        "name": "Paris",
        "cod": 200,
    }


def _env(i: int, *, city: str = "paris", payload: dict | None = None, observed: dt.datetime | None = None) -> dict:
    when = observed or BASE_TIME + dt.timedelta(hours=i)
    return json.loads(
        Envelope.build(
            source="openweather",
            city_id=city,
            observed_at=when,
            run_id="corpus",
            payload=payload if payload is not None else _payload(),
            ingested_at=BASE_TIME,
        ).to_bytes()
    )


def build() -> list[dict[str, Any]]:
    items: list[tuple[str, str, bytes | None]] = []

    def add(expect: str, why: str, value: bytes | dict | None) -> None:
        raw = json.dumps(value, ensure_ascii=False).encode() if isinstance(value, dict) else value
        items.append((expect, why, raw))

    n = iter(range(10_000))
    # -- not JSON at all ----------------------------------------------------------------------------------------
    for why, raw in [
        ("empty bytes", b""),
        ("whitespace", b"   \n"),
        ("truncated", b'{"schema_version": 1, "event_'),
        ("trailing comma", b'{"schema_version": 1,}'),
        ("single quotes", b"{'schema_version': 1}"),
        ("NaN literal", b'{"schema_version": NaN}'),
        ("Infinity literal", b'{"x": Infinity}'),
        ("binary garbage", bytes(range(256))),
        ("UTF-16 text", '{"a": 1}'.encode("utf-16")),
        ("plain text", b"hello weather"),
        ("XML", b"<weather><temp>1</temp></weather>"),
        ("JSON array", b"[1, 2, 3]"),
        ("JSON string", b'"just a string"'),
        ("JSON number", b"42"),
        ("JSON null", b"null"),
        ("invalid utf-8 inside JSON", b'{"city_id": "\xff\xfe"}'),
        ("NUL bytes", b"\x00\x00\x00"),
        ("deep nesting", b"[" * 5000 + b"]" * 5000),
        ("huge non-JSON (300 kB)", b"x" * 300_000),
    ]:
        add("deadletter", why, raw)
    add("deadletter", "tombstone (null value)", None)
    # -- envelope schema violations -------------------------------------------------------------------------------
    good = _env(next(n))
    for field in good:
        broken = dict(good)
        del broken[field]
        add("deadletter", f"missing {field}", broken)
    for field, value in [
        ("schema_version", "1"),
        ("schema_version", True),
        ("city_id", 5),
        ("city_id", None),
        ("event_id", ["x"]),
        ("source", 7),
        ("observed_at", "yesterday"),
        ("observed_at", 1590969600),
        ("observed_at", "2020-06-01T00:00:00"),
        ("ingested_at", "2020-13-45T99:00:00Z"),
        ("run_id", {"a": 1}),
        ("payload", [1, 2]),
        ("payload", "a string"),
        ("payload", 3.5),
        ("payload", None),
    ]:
        add("deadletter", f"{field} = {value!r}", {**_env(next(n)), field: value})
    for version in (0, 2, 99, -1, 1.5, "v1"):
        add("deadletter", f"schema_version {version!r}", {**_env(next(n)), "schema_version": version})
    for source in ("darksky", "", "OPENWEATHER", "open meteo"):
        add("deadletter", f"unknown source {source!r}", {**_env(next(n)), "source": source})
    add("deadletter", "extra field", {**_env(next(n)), "extra": "field"})
    add("deadletter", "extra field __proto__", {**_env(next(n)), "__proto__": {"admin": True}})
    add("deadletter", "city_id too long (65 chars)", {**_env(next(n)), "city_id": "c" * 65})
    add("deadletter", "empty city_id", {**_env(next(n)), "city_id": ""})
    add("deadletter", "event_id too long", {**_env(next(n)), "event_id": "e" * 65})
    add("deadletter", "run_id of 10k chars", {**_env(next(n)), "run_id": "r" * 10_000})
    add("deadletter", "NaN inside payload", json.dumps(_env(next(n))).replace('"temp": 291.15', '"temp": NaN').encode())
    add(
        "deadletter",
        "oversized message (400 kB payload string)",
        {**_env(next(n)), "payload": {"blob": "z" * 400_000}, "city_id": "x" * 70},
    )
    # -- valid envelopes whose data breaks a rule: quarantine ------------------------------------------------
    for why, payload in [
        ("temperature 1e308 K", _payload(1e308)),
        ("temperature -500 K", _payload(-500)),
        ("temperature 0 K", _payload(0)),
        ("temperature 500 K", _payload(500)),
        ("temperature as text", _payload("hot")),
        ("temperature null", _payload(None)),
        ("no main block", {k: v for k, v in _payload().items() if k != "main"}),
        ("humidity 150", _payload(humidity=150)),
        ("humidity -5", _payload(humidity=-5)),
        ("pressure 0", _payload(pressure=0)),
        ("pressure 99999", _payload(pressure=99999)),
        ("feels_like 5000 K", _payload(feels_like=5000)),
        ("an error body under cod 200", {"cod": "404", "message": "city not found"}),
        ("empty payload object", {}),
    ]:
        add("quarantine", why, _env(next(n), payload=payload))
    for why, wind in [
        ("wind -3 m/s", {"speed": -3}),
        ("wind 1000 m/s", {"speed": 1000}),
        ("gust 500 m/s", {"speed": 3, "gust": 500}),
        ("direction 720°", {"speed": 3, "deg": 720}),
    ]:
        add("quarantine", why, _env(next(n), payload={**_payload(), "wind": wind}))
    for why, extra in [
        ("clouds 300 %", {"clouds": {"all": 300}}),
        ("rain -1 mm", {"rain": {"1h": -1}}),
        ("rain 10 m in an hour", {"rain": {"1h": 10_000}}),
        ("visibility -10 m", {"visibility": -10}),
    ]:
        add("quarantine", why, _env(next(n), payload={**_payload(), **extra}))
    for city in (
        "atlantis",
        "paris'; drop table staging.cities; --",
        "Robert'); DROP TABLE students;--",
        "東京",
        "ü" * 60,
        "city\nwith\nnewlines",
        "tab\tcity",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "%s%s%n",
        "paris ",
        "PARIS",
    ):
        add("quarantine", f"unknown city {city[:30]!r}", _env(next(n), city=city))
    for years in (1, 50, 7000):
        add(
            "quarantine",
            f"observed {years} years in the future",
            _env(next(n), observed=dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=365 * years)),
        )
    # -- odd but valid: clean ----------------------------------------------------------------------------------
    add("clean", "late event (2010)", _env(next(n), observed=dt.datetime(2010, 1, 1, 3, tzinfo=dt.UTC)))
    add(
        "clean",
        "non-UTC offset timestamp",
        json.loads(json.dumps(_env(next(n))).replace('Z", "ingested_at', '+00:00", "ingested_at')),
    )
    add("clean", "unicode in payload", _env(next(n), payload={**_payload(), "name": "Paris ☀ «été» 🌡"}))
    add("clean", "SQL in a payload string", _env(next(n), payload={**_payload(), "name": "x'); drop table y;--"}))
    add("clean", "huge payload string field", _env(next(n), payload={**_payload(), "name": "n" * 100_000}))
    add("clean", "rain 3h only", _env(next(n), payload={**_payload(), "rain": {"3h": 2.0}}))
    add("clean", "extra payload fields", _env(next(n), payload={**_payload(), "unexpected": {"a": [1, 2]}}))
    add("clean", "minimal payload", _env(next(n), payload={"main": {"temp": 280.0}, "dt": 1}))
    # -- the same event twice: deduplicated ----------------------------------------------------------------------
    first = _env(next(n))
    add("clean", "event sent twice (first)", first)
    add("duplicate", "event sent twice (second)", copy.deepcopy(first))
    refetch = copy.deepcopy(first)
    refetch["run_id"] = "corpus-refetch"
    add("duplicate", "same event re-fetched by another run", refetch)
    out = []
    for i, (expect, why, raw) in enumerate(items):
        out.append(
            {
                "id": i,
                "expect": expect,
                "why": why,
                "value_b64": None if raw is None else base64.b64encode(raw).decode(),
            }
        )
    return out


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in OUT.read_text().splitlines() if line]


def value(item: dict[str, Any]) -> bytes | None:
    return None if item["value_b64"] is None else base64.b64decode(item["value_b64"])


if __name__ == "__main__":
    corpus = build()
    OUT.write_text("".join(json.dumps(c) + "\n" for c in corpus))
    print(f"{len(corpus)} items -> {OUT}")
    _ = event_id  # the ids in the corpus come from the same function the producer uses
