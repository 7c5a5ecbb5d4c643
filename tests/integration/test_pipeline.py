"""`weatherpipe run` and `weatherpipe status` end to end, as a user runs them (CLI in a subprocess)."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from tests.support import provision_env, run_cli, run_cli_on_terminal
from weatherpipe import db
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture
def isolated_env(local_stack: Settings):
    uid = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHERPIPE_")}
    env.update(
        {
            "WEATHERPIPE_KAFKA__TOPIC": f"run_{uid}",
            "WEATHERPIPE_KAFKA__CONSUMER_GROUP": f"run_{uid}",
            "WEATHERPIPE_S3__BRONZE_PREFIX": f"tests/run_{uid}/bronze",
            "WEATHERPIPE_S3__DEADLETTER_PREFIX": f"tests/run_{uid}/dl",
            "WEATHERPIPE_POSTGRES__STAGING_SCHEMA": f"run_{uid}_stg",
            "WEATHERPIPE_POSTGRES__OPS_SCHEMA": f"run_{uid}_ops",
            "WEATHERPIPE_DBT__SCHEMA_PREFIX": f"run_{uid}_",
            "WEATHERPIPE_LOG_FORMAT": "json",
        }
    )
    provision_env(local_stack, env)
    yield env
    db.drop_schemas(local_stack.postgres, f"run_{uid}_")


def test_run_then_status_reconciles(isolated_env: dict[str, str]) -> None:
    run = run_cli(
        "run", "--start", "2013-02-11T00:00", "--end", "2013-02-11T12:00", "--no-docs", env=isolated_env, timeout=600
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    out = run.stdout
    assert "source replay, 2013-02-11 00:00 → 2013-02-11 12:00 UTC" in out
    for stage in ("ingest", "bronze", "silver", "gold"):
        assert f"\n{stage} " in out
    assert "result     RECONCILED" in out and "FAIL" not in out
    assert "[4/4] gold success" in run.stderr

    status = run_cli("status", env=isolated_env)
    assert status.returncode == 0, status.stderr
    assert "  reconciled" in status.stdout and "hourly facts" in status.stdout

    # watched on a terminal, the same run (again: every stage has work, the re-fetch) shows each stage's bars
    code, screen = run_cli_on_terminal(
        "run", "--start", "2013-02-11T00:00", "--end", "2013-02-11T12:00", "--no-docs", env=isolated_env
    )
    assert code == 0, screen[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    for bar in ("ingest: observations", "bronze: messages", "silver: steps", "gold: dbt build nodes"):
        assert bar in plain, bar
    assert re.search(r"bronze: messages\s.*?(\d+)/\1\b", plain)  # the drain's bar ends full
    assert "result     RECONCILED" in plain


def test_bad_api_key_is_one_clear_line(isolated_env: dict[str, str]) -> None:
    env = {
        **isolated_env,
        "OPENWEATHER_API_KEY": "not-a-valid-key-CANARY",
        "WEATHERPIPE_API__OPENWEATHER_BASE_URL": "http://127.0.0.1:9",
        "WEATHERPIPE_API__MAX_ATTEMPTS": "1",
    }
    out = run_cli("ingest", "--source", "openweather", "--cities", "paris", env=env)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr
    assert "not-a-valid-key-CANARY" not in out.stdout + out.stderr
