"""Hourly weather pipeline: ingest -> bronze -> silver -> gold (dbt via Cosmos) -> reconcile.

Thin wiring only: task bodies live in ``weatherpipe.airflow_tasks`` and import their heavy dependencies when
they run. Every task is idempotent for its data interval, so clearing a run or backfilling a range
(``airflow backfill create --dag-id weather_pipeline --from-date … --to-date …``) gives the same Gold.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import TriggerRule, dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    PRODUCER_WATCHER_DONE_TASK_ID,
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    TestBehavior,
)

from weatherpipe.airflow_tasks import (
    attach_shared_tests_to_their_last_model,
    dbt_operator_config,
    model_tasks_wait_for_the_build_to_start,
    push_each_value_once,
    push_only_the_node_events_model_tasks_read,
)

DBT = dbt_operator_config()
push_only_the_node_events_model_tasks_read()  # of Cosmos's XCom pushes, the ones a model task reads
push_each_value_once()  # and each of those once
model_tasks_wait_for_the_build_to_start()  # so that dag.test(), one task at a time, runs the build first
DBT_EXECUTABLE = os.environ.get("WEATHERPIPE_DBT_EXECUTABLE", str(Path(sys.executable).with_name("dbt")))

RETRIES = {  # for transient errors; terminal ones fail at once (weatherpipe.airflow_tasks)
    "retries": DBT["retries"],
    "retry_delay": timedelta(seconds=DBT["retry_delay_s"]),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def _run_id() -> str:
    return get_current_context()["run_id"]


@dag(
    dag_id="weather_pipeline",
    # data intervals [t - 1h, t): Airflow 3's plain cron schedule would give an empty interval
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "weather-data", **RETRIES},
    tags=["weather", "medallion"],
    doc_md=__doc__,
)
def weather_pipeline() -> None:
    @task(pool="weather_api", pool_slots=1)
    def ingest(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None) -> dict:
        from weatherpipe import airflow_tasks

        assert data_interval_start is not None and data_interval_end is not None
        return airflow_tasks.ingest(_run_id(), data_interval_start, data_interval_end)

    @task
    def bronze(window: dict) -> dict:
        from weatherpipe import airflow_tasks

        return airflow_tasks.bronze(_run_id())

    @task
    def silver(window: dict, bronze_result: dict) -> dict:
        from weatherpipe import airflow_tasks

        return airflow_tasks.silver(_run_id(), window)

    @task(retries=0)
    def reconcile() -> dict:
        from weatherpipe import airflow_tasks

        return airflow_tasks.reconcile(_run_id())

    gold = DbtTaskGroup(
        group_id="gold",
        project_config=ProjectConfig(
            dbt_project_path=DBT["project_dir"],
            manifest_path=DBT["project_dir"] / "target" / "manifest.json",
            env_vars=DBT["env"],
            dbt_vars=DBT["vars"],
        ),
        profile_config=ProfileConfig(
            profile_name=DBT["profile"],
            target_name=DBT["target"],
            profiles_yml_filepath=DBT["project_dir"] / "profiles.yml",
        ),
        # Watcher mode: one `dbt build` of the whole project per DAG run (the producer task, in its own process via
        # dbtRunner) and one task per model that follows that model's result (its tests included) — the graph, the
        # per-model state and logs stay in the UI. A model that failed fails its own task; that task's retry runs
        # that model alone.
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            dbt_executable_path=DBT_EXECUTABLE,
            invocation_mode=InvocationMode.DBT_RUNNER,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.AFTER_EACH,  # tests run in the one `dbt build`; each model task follows its own
            should_detach_multiple_parents_tests=False,  # in the model test task: its result comes from the build
            emit_datasets=False,
        ),
        operator_args={"install_deps": False},
        default_args=RETRIES,
    )

    window = ingest()
    silver_done = silver(window, bronze(window))
    silver_done >> gold >> reconcile()
    _watch_the_build(gold)


def _watch_the_build(group: DbtTaskGroup) -> None:
    """Each model task follows its node through the one `dbt build` while the build runs: it starts once its upstream
    models' tasks succeeded (Silver, for the first ones) and reads the build's results every 2 s in its own process,
    so the model tasks end a moment after the build instead of starting one dependency level at a time after it
    (on a slow 2-core machine: 22-23 s for the group instead of 26 s). Cosmos's default
    would defer each to the triggerer, which costs a second task start per model. A test of several models counts
    for the last of them, as in dbt (``attach_shared_tests_to_their_last_model``). A model or a model's tests that
    failed fail their own task, and its retry runs that node alone. The build itself is never retried (a second one
    would redo every model), and a failed build does not fail the run once every model task has succeeded."""
    tasks = {t.task_id: t for t in group}
    producer = tasks.pop(f"{group.group_id}.{PRODUCER_WATCHER_TASK_ID}")
    done = tasks.pop(f"{group.group_id}.{PRODUCER_WATCHER_DONE_TASK_ID}")
    producer.retries = 0
    producer.tests_per_model = attach_shared_tests_to_their_last_model(
        producer.tests_per_model, {uid: node.depends_on for uid, node in group.dbt_graph.nodes.items()}
    )
    done.trigger_rule = TriggerRule.ALL_DONE
    for model_task in tasks.values():
        model_task.deferrable = False
        model_task.mode = "poke"
        model_task.poke_interval = 2


weather_pipeline()
