"""The Airflow DAGs: they import cleanly, have the expected shape, and run end to end with dag.test()."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, provision_env
from weatherpipe import db, gold
from weatherpipe.airflow_local import airflow_env, prepare
from weatherpipe.settings import Settings

pytestmark = pytest.mark.slow
HOME = ROOT / ".stack" / "airflow-tests"


@pytest.fixture(scope="module")
def airflow_home(local_stack: Settings) -> dict[str, str]:
    """A migrated Airflow metadata DB and an isolated slice of the stack, as environment variables."""
    uid = uuid.uuid4().hex[:8]
    isolation = {
        "WEATHERPIPE_KAFKA__TOPIC": f"af_{uid}",
        "WEATHERPIPE_KAFKA__CONSUMER_GROUP": f"af_{uid}",
        "WEATHERPIPE_S3__BRONZE_PREFIX": f"tests/af_{uid}/bronze",
        "WEATHERPIPE_S3__DEADLETTER_PREFIX": f"tests/af_{uid}/dl",
        "WEATHERPIPE_POSTGRES__STAGING_SCHEMA": f"af_{uid}_stg",
        "WEATHERPIPE_POSTGRES__OPS_SCHEMA": f"af_{uid}_ops",
        "WEATHERPIPE_DBT__SCHEMA_PREFIX": f"af_{uid}_",
    }
    env = {**airflow_env(local_stack, home=HOME), **isolation}
    provision_env(local_stack, env)
    prepare(env)
    gold.parse(local_stack)  # the manifest Cosmos renders from
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    db.drop_schemas(local_stack.postgres, f"af_{uid}_")


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(ROOT / "airflow" / "dags"))
    ours = [
        w for w in caught if str(ROOT / "airflow") in str(w.filename) and issubclass(w.category, DeprecationWarning)
    ]
    return bag, ours


def test_dagbag_imports_without_errors_or_deprecations(airflow_home) -> None:
    bag, deprecations = _dagbag()
    assert bag.import_errors == {}
    assert deprecations == []
    assert {"weather_pipeline", "weather_maintenance"} <= set(bag.dag_ids)


def test_dag_structure_and_cosmos_tasks_for_every_model(airflow_home) -> None:
    bag, _ = _dagbag()
    dag = bag.get_dag("weather_pipeline")
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert dag.max_active_runs == 1 and isinstance(dag.timetable, CronDataIntervalTimetable)
    import pendulum

    start = pendulum.datetime(2026, 2, 12, 5, tz="UTC")
    interval = dag.timetable.infer_manual_data_interval(run_after=start)
    assert (interval.start, interval.end) == (start - dt.timedelta(hours=1), start)
    ids = set(dag.task_ids)
    assert {"ingest", "bronze", "silver", "reconcile"} <= ids
    manifest = json.loads((ROOT / "dbt_project" / "target" / "manifest.json").read_text())
    models = [n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    for model in models:
        assert any(t.startswith(f"gold.{model}") for t in ids), f"no Cosmos task for model {model}"
    assert any(t.startswith("gold.snap_cities") for t in ids)
    assert dag.get_task("bronze").upstream_task_ids == {"ingest"}
    assert "silver" in {u for t in ids if t.startswith("gold.") for u in dag.get_task(t).upstream_task_ids}
    assert dag.get_task("ingest").pool == "weather_api"
    maintenance = bag.get_dag("weather_maintenance")
    assert set(maintenance.task_ids) == {"bronze_retention", "sweep_staging", "airflow_db_clean"}


def _marts_hash(settings_env: dict[str, str]) -> str:
    from weatherpipe.settings import load_settings

    settings = load_settings()
    marts = settings.dbt.schema("marts")
    with db.connect(settings.postgres.admin) as conn:
        return (
            conn.execute(
                f"select md5(string_agg(t::text, '|' order by t::text)) from \"{marts}\".gold_weather_aggregates t"
            ).fetchone()[0]
            + conn.execute(
                f"select md5(string_agg(t::text, '|' order by t::text)) from "
                f'(select observation_id, temperature_c, event_id from "{marts}".fct_weather_observations) t'
            ).fetchone()[0]
        )


def test_dag_runs_end_to_end_and_a_rerun_changes_nothing(airflow_home) -> None:
    """dag.test() on the replay source: 2026-02-12 03:00-05:00 replays the same hours of 2013."""
    script = ROOT / "tests" / "support" / "dag_runner.py"
    logical = "2026-02-12T05:00:00+00:00"
    for attempt in (1, 2):
        out = subprocess.run(
            [sys.executable, str(script), logical],
            env=airflow_home,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        state = json.loads(out.stdout.strip().splitlines()[-1])
        assert state["state"] == "success", state
        if attempt == 1:
            first = _marts_hash(airflow_home)
    assert _marts_hash(airflow_home) == first
    from weatherpipe.settings import load_settings

    settings = load_settings()
    with db.connect(settings.postgres.admin) as conn:
        facts = conn.execute(f'select count(*) from "{settings.dbt.schema("marts")}".fct_weather_observations')
        assert facts.fetchone()[0] > 0


def test_status_reports_a_reconciled_run(airflow_home) -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("weatherpipe")), "status"],
        env=airflow_home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert " reconciled" in out.stdout and "NOT" not in out.stdout
    assert "hourly facts" in out.stdout


def test_weatherpipe_airflow_starts_standalone_with_the_dags(local_stack: Settings, tmp_path: Path) -> None:
    """`weatherpipe airflow` brings Airflow up on the local stack and prints where to log in."""
    import signal
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "WEATHERPIPE_STACK__STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("weatherpipe")), "airflow", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        banner = next((line for line in proc.stdout if "Airflow UI" in line), "")  # after dbt parse's output
        assert f"http://127.0.0.1:{port}/" in banner and "login: admin" in banner
        deadline, version = time.monotonic() + 240, None
        while time.monotonic() < deadline and version is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/version", timeout=3) as resp:
                    version = json.loads(resp.read())["version"]
            except OSError:
                time.sleep(2)
        assert version and version.startswith("3.")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # the api-server, scheduler, ... shut down gracefully
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            proc.poll()
            time.sleep(0.5)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
