"""Secrets: none in the repository, and canary secrets nowhere after a whole run."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ingestion import bronze
from spark_jobs import silver
from tests.support import ROOT, derive
from weatherpipe import db, gold
from weatherpipe.settings import Settings

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


@pytest.mark.slow
@pytest.mark.spark
def test_canary_secrets_never_land_anywhere(settings: Settings, spark, tmp_path: Path, capfd) -> None:
    """A run with canary API key and passwords: none appears in logs, exceptions, Kafka, bronze, tables or docs."""
    from ingestion import ingest
    from tests.support import bronze_rows, consume_all
    from tests.support.fake_weather_api import FakeWeatherApi
    from weatherpipe.cities import load_cities
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
            postgres={
                "password": pg_password,
                "transformer_password": "tr-CANARY-33cc",
                "admin_password": "adm-CANARY-44dd",
                "bi_password": bi_password,
            },
            dbt={"schema_prefix": f"c{settings.postgres.staging_schema[-6:]}_"},
        )
        configure_logging("DEBUG", "json", canary.secrets())
        db.provision(canary)  # role passwords are set as SCRAM verifiers: the statements carry no password
        ingest.run(canary, source="openweather", city_ids=["paris", "london", "nyc-jfk"])
        bronze.run(canary)
        silver.run(canary, spark=spark)
        gold.run(canary)
        docs = gold.build_docs(canary)
    captured = capfd.readouterr()
    haystacks = {
        "logs": captured.out + captured.err,
        "kafka": b"".join(v or b"" for _, v in consume_all(canary)).decode(errors="replace"),
        "bronze": json.dumps(bronze_rows(canary), default=str),
    }
    with db.connect(settings.postgres.admin) as conn:
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
