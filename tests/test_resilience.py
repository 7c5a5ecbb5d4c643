"""The pipeline as a whole under bad input, broken services and canary secrets."""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import pytest

from ingestion import bronze_sink
from spark_jobs import silver_job
from tests.conftest import ROOT, derive
from tests.corpus.build_corpus import build, load, value
from tests.helpers import deadletters, publish_raw
from weatherpipe import db, gold
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def test_corpus_file_is_current_and_large_enough() -> None:
    corpus = load()
    assert len(corpus) >= 100
    assert [(c["expect"], c["why"]) for c in corpus] == [(c["expect"], c["why"]) for c in build()]


def test_hostile_corpus_through_the_whole_pipeline(settings: Settings, spark) -> None:
    corpus = load()
    expected = collections.Counter(c["expect"] for c in corpus)
    publish_raw(settings, [value(c) for c in corpus], keys=[f"corpus-{c['id']}".encode() for c in corpus])

    bronze = bronze_sink.run(settings)  # must not crash
    assert bronze.rows_in == len(corpus)
    assert bronze.rows_rejected == expected["deadletter"]
    assert bronze.rows_out == len(corpus) - expected["deadletter"]
    dead = deadletters(settings)
    assert len(dead) == expected["deadletter"] and all(d["reason"] for d in dead)
    by_key = {d["key"]: d for d in dead}
    for c in corpus:
        if c["expect"] == "deadletter":
            assert f"corpus-{c['id']}" in by_key, c["why"]

    silver = silver_job.run(settings, spark=spark)  # must not crash
    d = silver.details
    assert silver.rows_in == bronze.rows_out
    assert silver.rows_rejected == expected["quarantine"]
    assert d["inserted"] == expected["clean"] and d["duplicates_in_batch"] == expected["duplicate"]
    assert (
        silver.rows_in
        == d["inserted"] + d["updated"] + d["stale_vs_staging"] + d["duplicates_in_batch"] + silver.rows_rejected
    )
    with db.connect(settings.postgres) as conn:
        s = settings.postgres.staging_schema
        quarantined = conn.execute(f'select failed_rules from "{s}".weather_quarantine').fetchall()
        assert len(quarantined) == expected["quarantine"] and all(rules for (rules,) in quarantined)
        assert conn.execute(f'select count(*) from "{s}".cities').fetchone()[0] == 21  # no injected SQL ran

    uid = settings.postgres.staging_schema.removeprefix("stg_")
    warehouse = derive(settings, dbt={"schema_prefix": f"r{uid}_"})
    try:
        result = gold.run(warehouse)  # the clean survivors build and pass every dbt test
        assert result.status == "success" and result.rows_out == expected["clean"]
    finally:
        db.drop_schemas(settings.postgres, f"r{uid}_")


SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{36}"),
    re.compile(r"xox[abpr]-[0-9A-Za-z-]{10,}"),
    re.compile(r"(?i)\bappid=[0-9a-f]{32}\b"),  # a real OpenWeather key in a URL
]
CANARY = re.compile(r"CANARY|canary-key|canary-pass")


def test_no_secret_in_the_repository() -> None:
    """No key-like string in any tracked file, no .env file, and test canaries only inside tests/."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = [f for f in files if Path(f).name == ".env"]
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{name}: {p.pattern}" for p in SECRET_PATTERNS if p.search(text)]
        if not name.startswith("tests/") and CANARY.search(text):
            offenders.append(f"{name}: canary")
    assert offenders == []
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_bronze_survives_s3_outage_and_recovers_exactly_once(settings: Settings) -> None:
    """The S3 endpoint disappears while the sink runs: the stage fails with a clear transient error, commits
    nothing, and a later run writes every message exactly once."""
    from ingestion.envelope import Envelope
    from tests.helpers import bronze_rows
    from weatherpipe.errors import ServiceUnavailable

    when = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    msgs = [
        Envelope.build(
            source="replay", city_id=f"c{i}", observed_at=when + dt.timedelta(hours=i % 3), run_id="t", payload={"i": i}
        ).to_bytes()
        for i in range(30)
    ]
    publish_raw(settings, msgs)
    broken = derive(settings, s3={"endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(ServiceUnavailable) as err:
        bronze_sink.run(broken)
    assert err.value.transient and "127.0.0.1:9" in str(err.value)
    recovered = bronze_sink.run(settings)
    assert recovered.rows_out == 30
    rows = bronze_rows(settings)
    assert len(rows) == 30 and len({r["event_id"] for r in rows}) == 30


def test_canary_secrets_never_land_anywhere(settings: Settings, spark, tmp_path: Path, capfd) -> None:
    """A run with canary API key and passwords: none appears in logs, exceptions, Kafka, bronze, tables or docs."""
    from ingestion import stage
    from ingestion.cities import load_cities
    from tests.fake_weather_api import FakeWeatherApi
    from tests.helpers import bronze_rows, consume_all
    from weatherpipe.log import configure_logging

    key, pg_password, bi_password = "owm-CANARY-5f1e2d", "pg-CANARY-77aa", "bi-CANARY-99bb"
    with FakeWeatherApi(load_cities(settings)) as api:
        api.api_key = key
        canary = derive(
            settings,
            api={
                "openweather_base_url": api.url,
                "openweather_api_key": key,
                "backoff_initial_s": 0.01,
                "backoff_max_s": 0.02,
            },
            postgres={"password": pg_password, "bi_password": bi_password},
            dbt={"schema_prefix": f"c{settings.postgres.staging_schema[-6:]}_"},
        )
        configure_logging("DEBUG", "json", canary.secrets())
        stage.run(canary, source="openweather", city_ids=["paris", "london", "nyc-jfk"])
        bronze_sink.run(canary)
        silver_job.run(canary, spark=spark)
        gold.run(canary)
        docs = gold.build_docs(canary)
    captured = capfd.readouterr()
    haystacks = {
        "logs": captured.out + captured.err,
        "kafka": b"".join(v or b"" for _, v in consume_all(canary)).decode(errors="replace"),
        "bronze": json.dumps(bronze_rows(canary), default=str),
    }
    with db.connect(settings.postgres) as conn:
        for schema in (canary.postgres.staging_schema, canary.postgres.ops_schema, canary.dbt.schema("marts")):
            for (table,) in conn.execute("select tablename from pg_tables where schemaname = %s", (schema,)):
                rows = conn.execute(f'select * from "{schema}"."{table}"').fetchall()
                haystacks[f"{schema}.{table}"] = json.dumps(rows, default=str)
    db.drop_schemas(settings.postgres, canary.dbt.schema(""))
    for artefact in list(docs.glob("*.json")) + list(docs.glob("*.html")):
        haystacks[artefact.name] = artefact.read_text(errors="replace")
    dbt_logs = list((settings.state_dir / "logs" / "dbt").glob("*.log"))  # dbt keeps one log per process
    assert dbt_logs
    for log_file in dbt_logs:
        haystacks[log_file.name] = log_file.read_text(errors="replace")
    for name, text in haystacks.items():
        for secret in (key, pg_password, bi_password):
            assert secret not in text, f"{secret} leaked into {name}"
