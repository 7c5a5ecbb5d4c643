"""The Airflow DAGs: they import cleanly, have the expected shape, and run end to end — with dag.test() and under the
real scheduler (``weatherpipe airflow``: metadata in PostgreSQL, LocalExecutor)."""

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

from tests.support import ROOT, derive, free_port, provision_env
from weatherpipe import db, gold
from weatherpipe.airflow_local import AirflowClient, airflow_env, drop_metadata, prepare, running
from weatherpipe.settings import Settings

pytestmark = pytest.mark.slow
HOME = ROOT / ".stack" / "airflow-tests"
METADATA_DB = "weatherpipe_airflow_tests"  # never the user's own Airflow database


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
    settings = derive(local_stack, airflow={"database": METADATA_DB})
    env = {**airflow_env(settings, home=HOME), **isolation, "WEATHERPIPE_AIRFLOW__DATABASE": METADATA_DB}
    provision_env(local_stack, env)
    drop_metadata(settings)  # no run of an earlier session: the scheduler test finds the run it caused
    prepare(settings, env)
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


class _PushRecorder:
    """What Cosmos's producer calls on its task instance to push an XCom, recorded."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def xcom_push(self, key: str, value: object) -> None:
        self.keys.append(key)


def _node_event(name: str, resource_type: str, unique_id: str) -> dict:
    node = {"unique_id": unique_id, "resource_type": resource_type, "node_status": "success"}
    return {"info": {"name": name, "msg": "m"}, "data": {"node_info": node}}


def test_the_watcher_producer_pushes_only_the_node_events_a_task_reads(airflow_home) -> None:
    """The DAG trims Cosmos's per-event XCom pushes (``push_only_the_node_events_model_tasks_read``): a model's or a
    snapshot's final event is pushed; its earlier events and every test's are not. If a Cosmos upgrade moves the
    names it patches, this fails instead of the trim silently doing nothing."""
    from cosmos.operators._watcher import base

    _dagbag()
    ti = _PushRecorder()
    for name, kind, uid in [
        ("NodeStart", "model", "model.weather_dw.dim_city"),
        ("NodeExecuting", "model", "model.weather_dw.dim_city"),
        ("NodeFinished", "model", "model.weather_dw.dim_city"),
        ("NodeFinished", "snapshot", "snapshot.weather_dw.snap_cities"),
        ("NodeFinished", "test", "test.weather_dw.not_null_dim_city_city_id.1"),
        ("NodeFinished", "unit_test", "unit_test.weather_dw.fct.t"),
    ]:
        base._process_dbt_log_event(ti, _node_event(name, kind, uid))
    assert ti.keys == [
        base.get_dbt_event_xcom_key("model.weather_dw.dim_city"),
        base.get_dbt_event_xcom_key("snapshot.weather_dw.snap_cities"),
    ]
    assert "_process_dbt_log_event" in base.store_dbt_resource_status_from_log.__code__.co_names  # looked up per call


def test_the_watcher_producer_pushes_each_value_once(airflow_home) -> None:
    """dbt reports a node's end twice; the producer's second push of the same value under the same key is skipped
    (``push_each_value_once``), a new value is pushed, and another task instance pushes its own."""
    from cosmos.operators._watcher import aggregation, base

    _dagbag()
    ti, retry = _PushRecorder(), _PushRecorder()
    status = {"status": "success", "outlet_uris": []}
    for push in (base.safe_xcom_push, base.safe_xcom_push, aggregation.safe_xcom_push):
        push(task_instance=ti, key="model__weather_dw__dim_city_status", value=dict(status))
    base.safe_xcom_push(task_instance=ti, key="model__weather_dw__dim_city_status", value={**status, "status": "fail"})
    aggregation.safe_xcom_push(task_instance=ti, key="model__weather_dw__dim_city_tests_status", value="pass")
    aggregation.safe_xcom_push(task_instance=ti, key="model__weather_dw__dim_city_tests_status", value="pass")
    base.safe_xcom_push(task_instance=retry, key="model__weather_dw__dim_city_status", value=dict(status))
    assert ti.keys == [
        "model__weather_dw__dim_city_status",
        "model__weather_dw__dim_city_status",
        "model__weather_dw__dim_city_tests_status",
    ]
    assert retry.keys == ["model__weather_dw__dim_city_status"]
    assert "safe_xcom_push" in base.store_dbt_resource_status_from_log.__code__.co_names  # looked up per call
    assert "safe_xcom_push" in aggregation.push_test_result_or_aggregate.__code__.co_names


def test_a_model_task_gives_its_turn_back_until_the_build_has_started(airflow_home) -> None:
    """``model_tasks_wait_for_the_build_to_start``: with no result for its node yet, a model task reschedules itself
    while the build's task has not started (so ``dag.test()``, one task at a time, runs the build in between), and
    keeps poking once it runs."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowRescheduleException
    from cosmos.operators._watcher.base import BaseConsumerSensor

    _dagbag()
    sensor = SimpleNamespace(poke_interval=2, poke_retry_number=0)
    for not_started in (None, "scheduled", "queued"):
        with pytest.raises(AirflowRescheduleException):
            BaseConsumerSensor._handle_no_dbt_node_status(sensor, not_started, 1, {})
    assert BaseConsumerSensor._handle_no_dbt_node_status(sensor, "running", 1, {}) is False
    assert sensor.poke_retry_number == 1  # Cosmos's own handling: poke again


_PRELOAD_PROBE = """
import json, sys, threading
sys.argv = ["airflow", *sys.argv[1:]]
import airflow  # Airflow imports airflow_local_settings as it starts
from airflow_local_settings import PRELOAD
loaded = [m for m in PRELOAD if m in sys.modules]
threads, grpc = threading.active_count(), "grpc" in sys.modules
print(json.dumps({"all": list(PRELOAD), "loaded": loaded, "threads": threads, "grpc": grpc}))
"""


@pytest.mark.parametrize("command", ["scheduler", "dags"])
def test_only_the_scheduler_preloads_what_tasks_import_and_starts_no_thread(command: str, tmp_path: Path) -> None:
    """``airflow_local_settings``: the scheduler, whose forks run the tasks, imports their modules without starting a
    thread or loading gRPC (a fork would break either); any other Airflow command starts as fast as before."""
    from weatherpipe.airflow_local import airflow_env
    from weatherpipe.settings import load_settings

    env = airflow_env(load_settings(), home=tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _PRELOAD_PROBE, command], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = {"dbt.cli.main", "weatherpipe.gold", "ingestion.bronze", "spark_jobs.silver"}
    assert heavy <= set(probe["all"])
    if command == "scheduler":
        assert probe["loaded"] == probe["all"]
    else:  # Airflow itself may import Cosmos (its plugin), never the rest
        assert not heavy & set(probe["loaded"]), probe["loaded"]
    assert probe["threads"] == 1 and not probe["grpc"]


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
    # a test of several models counts for the last of them, as dbt runs it: a dimension's test task does not wait
    # for the fact's relationship test, nor the fact's for the aggregate's reconciliation
    waits_for = dag.get_task("gold.dbt_producer_watcher").tests_per_model
    fct, aggregates = "model.weather_dw.fct_weather_observations", "model.weather_dw.gold_weather_aggregates"
    shared = {
        n["unique_id"]: set(n["depends_on"]["nodes"])
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test" and len([d for d in n["depends_on"]["nodes"] if d.startswith("model.")]) > 1
    }
    assert len(shared) >= 5
    for test, parents in shared.items():
        holders = {model for model, tests in waits_for.items() if test in tests}
        assert holders == ({aggregates} if aggregates in parents else {fct}), test
    assert dag.get_task("bronze").upstream_task_ids == {"ingest"}
    assert "silver" in {u for t in ids if t.startswith("gold.") for u in dag.get_task(t).upstream_task_ids}
    assert dag.get_task("ingest").pool == "weather_api"
    maintenance = bag.get_dag("weather_maintenance")
    assert set(maintenance.task_ids) == {"bronze_compaction", "bronze_retention", "sweep_staging", "airflow_db_clean"}


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


def test_the_scheduler_runs_an_hour_with_a_task_per_model_and_retries_only_what_failed(
    airflow_home: dict[str, str], local_stack: Settings, tmp_path: Path
) -> None:
    """`weatherpipe airflow` brings Airflow up on the local stack, its metadata in PostgreSQL. Unpaused, the DAG's
    scheduled hour runs to success under the real scheduler: one task per dbt model follows the one `dbt build`, on
    a LocalExecutor. Then a leaf model that cannot be written fails its own task, and only that task and the one
    after it are retried (each runs its node alone), while the rest of the run succeeded at its first try."""
    env = {
        **airflow_home,
        "WEATHERPIPE_STACK__STATE_DIR": str(tmp_path),
        # the retry waits 15-30 s (exponential backoff with jitter): the test gives the table back within that
        "WEATHERPIPE_AIRFLOW__RETRIES": "2",
        "WEATHERPIPE_AIRFLOW__RETRY_DELAY_S": "30",
    }
    port = free_port()
    with running(env, port, tmp_path / "airflow.log") as client:
        banner = next(line for line in (tmp_path / "airflow.log").read_text().splitlines() if "Airflow UI" in line)
        assert f"http://127.0.0.1:{port}/" in banner and "login: admin" in banner
        with db.connect(local_stack.postgres.admin, METADATA_DB) as conn:  # the metadata is in PostgreSQL
            assert conn.execute("select count(*) from dag where dag_id = 'weather_pipeline'").fetchone()[0] == 1
        client.unpause("weather_pipeline")  # catchup is off: the scheduler runs the last complete hour
        run_id = client.scheduled_run("weather_pipeline", timeout_s=120)
        run = client.wait("weather_pipeline", run_id, timeout_s=900)
        tasks = client.task_instances("weather_pipeline", run_id)
        failed = {t["task_id"]: t["state"] for t in tasks if t["state"] != "success"}
        assert run["state"] == "success" and not failed, failed
        ids = {t["task_id"] for t in tasks}
        manifest = json.loads((ROOT / "dbt_project" / "target" / "manifest.json").read_text())
        models = [n["name"] for n in manifest["nodes"].values() if n["resource_type"] in {"model", "snapshot"}]
        assert "gold.dbt_producer_watcher" in ids
        for model in models:
            assert any(t.startswith(f"gold.{model}") for t in ids), f"no task for model {model}"
        # the tasks ran on a LocalExecutor with several workers (SQLite would have forced one at a time); whether
        # two of them overlapped depends on how long they take, so that is not what is checked
        log = (tmp_path / "airflow.log").read_text()
        assert "LocalExecutor(parallelism=16)" in log and log.count("Worker starting up") > 1

        retried = _a_model_fails_once(
            client, local_stack, airflow_home, dt.datetime.fromisoformat(run["data_interval_start"])
        )
    assert retried == {"gold.agg_weather_monthly.run": 2, "gold.agg_weather_monthly.test": 2}


def _a_model_fails_once(
    client: AirflowClient, local_stack: Settings, env: dict[str, str], before: dt.datetime
) -> dict[str, int]:
    """The hour before ``before``, with the leaf mart ``agg_weather_monthly`` owned by another role, so dbt's login
    cannot write it; given back as soon as its task failed. Returns the tasks that needed more than one try."""
    import time

    marts = derive(local_stack, dbt={"schema_prefix": env["WEATHERPIPE_DBT__SCHEMA_PREFIX"]}).dbt.schema("marts")
    table = f'"{marts}".agg_weather_monthly'
    owner = local_stack.postgres.transformer_user
    with db.connect(local_stack.postgres.admin) as conn:
        conn.execute(f"alter table {table} owner to {local_stack.postgres.admin_user}")
    try:
        run_id = client.trigger("weather_pipeline", before - dt.timedelta(hours=1), before, "model_fails_once")
        deadline = time.monotonic() + 600
        state = None
        while state not in {"up_for_retry", "failed", "success"} and time.monotonic() < deadline:
            time.sleep(0.5)
            states = {t["task_id"]: t["state"] for t in client.task_instances("weather_pipeline", run_id)}
            state = states.get("gold.agg_weather_monthly.run")
        assert state == "up_for_retry", states
        assert states["gold.fct_weather_observations.run"] == "success"  # the rest of Gold did not wait for it
    finally:
        with db.connect(local_stack.postgres.admin) as conn:
            conn.execute(f'alter table {table} owner to "{owner}"')
    run = client.wait("weather_pipeline", run_id, timeout_s=900)
    tasks = client.task_instances("weather_pipeline", run_id)
    assert run["state"] == "success", {t["task_id"]: t["state"] for t in tasks if t["state"] != "success"}
    assert {t["task_id"]: t["try_number"] for t in tasks}["gold.dbt_producer_watcher"] == 1  # one build, never two
    return {t["task_id"]: t["try_number"] for t in tasks if t["try_number"] > 1}
