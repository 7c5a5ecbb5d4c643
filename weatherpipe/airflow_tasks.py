"""The bodies of the Airflow tasks. DAG files only wire these together; every heavy import happens here, at
task run time, and each task calls the same stage function as the CLI.

Transient errors (a service down, API 429/5xx) are re-raised for Airflow to retry with backoff; terminal ones
(bad key, bad config, a broken ``fail`` expectation) fail the task at once, without retries.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weatherpipe.errors import PipelineError

if TYPE_CHECKING:
    from weatherpipe.resources import Resources


def _resources() -> Resources:
    """The task's settings (with JSON logging) and the resources its stage uses: one process, one of each."""
    from weatherpipe.log import bootstrap
    from weatherpipe.resources import Resources

    return Resources(bootstrap("json"))


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except PipelineError as exc:
        if exc.transient:
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from None


def ingest(run_id: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    from ingestion import ingest
    from weatherpipe import pipeline

    res = _resources()
    settings = res.settings
    source = pipeline.resolve_source(settings, "auto")
    if source == "replay":
        start, end = pipeline.replay_window(settings, start, end)
    result = _guard(lambda: ingest.run(settings, source=source, start=start, end=end, run_id=run_id, resources=res))
    return {"source": source, "start": start.isoformat(), "end": end.isoformat(), **result.summary()}


def bronze(run_id: str) -> dict[str, Any]:
    from ingestion import bronze

    res = _resources()
    return _guard(lambda: bronze.run(res.settings, run_id=run_id, resources=res)).summary()


def silver(run_id: str, window: dict[str, Any]) -> dict[str, Any]:
    from spark_jobs import silver

    res = _resources()
    start, end = dt.datetime.fromisoformat(window["start"]), dt.datetime.fromisoformat(window["end"])
    return _guard(lambda: silver.run(res.settings, start=start, end=end, run_id=run_id, resources=res)).summary()


def reconcile(run_id: str) -> dict[str, Any]:
    from weatherpipe import pipeline

    checks = pipeline.reconcile(pipeline.run_results(_resources().settings, run_id))
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    if failed or not checks:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("run does not reconcile: " + ("; ".join(failed) or "no stage results"))
    return {c.name: c.detail for c in checks}


def retention(days: int) -> dict[str, Any]:
    from ingestion import bronze

    res = _resources()
    return _guard(lambda: bronze.retention(res.settings, days=days, resources=res)).summary()


def compact() -> dict[str, Any]:
    from ingestion import bronze

    res = _resources()
    return _guard(lambda: bronze.compact(res.settings, resources=res)).summary()


def sweep_staging() -> dict[str, Any]:
    """Drop Silver load tables orphaned by killed jobs (under the Silver job lock)."""
    from spark_jobs import silver
    from spark_jobs.pg_writer import sweep_orphans

    res = _resources()
    settings = res.settings
    silver.ensure_staging(settings)
    with silver.job_lock(res), res.warehouse.connect() as conn:
        return {"dropped": sweep_orphans(conn, settings.postgres.staging_schema)}


def push_only_the_node_events_model_tasks_read() -> None:
    """Cosmos's watcher producer pushes an XCom (an HTTP call to Airflow's API, one at a time under a lock inside
    dbt's threads) for each of four events of every dbt node: start, compiling, executing, finished — about 330 calls
    for this project's 82 nodes, which made the build in its task twice as slow as from the command line. A model task
    reads its node's event only once the node's status is final, and only for models and snapshots: the test tasks
    read their model's aggregated test status, which Cosmos pushes apart. So this pushes the finished and error events
    of models and snapshots only: the same values where they are read, and a build makes about 80 calls in all (with
    the statuses, compiled SQL and test aggregates) instead of about 400. It reaches into Cosmos 1.15's internals; a
    test fails if the names it relies on move."""
    from cosmos.operators._watcher import base

    base._DBT_EVENT_ALLOWLIST = base._DBT_ERROR_EVENTS_TYPES | frozenset({"NodeFinished"})

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        def process(task_instance: Any, dbt_log: dict[str, Any]) -> None:
            node = (dbt_log.get("data") or {}).get("node_info") or {}
            if node.get("resource_type") not in _NODES_NO_TASK_READS:
                original(task_instance, dbt_log)

        return process

    _wrap_once(base, "_process_dbt_log_event", wrap)


_NODES_NO_TASK_READS = frozenset({"test", "unit_test"})  # their results reach their model's test task aggregated


# The producer's Airflow states before its `dbt build` has started: no model result can come yet.
_BUILD_NOT_STARTED = frozenset({None, "none", "scheduled", "queued"})


def model_tasks_wait_for_the_build_to_start() -> None:
    """A model task of the watcher waits for its node's result beside the one `dbt build`, poking in its own process.
    Cosmos keeps poking while the build's task has not started yet, which is fine under the scheduler (it starts it
    at once) but not in ``dag.test()``: that runs one task at a time, and a model task picked before the build would
    wait for it forever. While the build has not started, the model task instead gives its turn back (Airflow's
    reschedule: it runs again after its poke interval), so ``dag.test()`` runs the build in between. This reaches
    into Cosmos 1.15's internals; a test fails if the names it relies on move."""
    from cosmos.operators._watcher.base import BaseConsumerSensor

    def wrap(original: Callable[..., bool]) -> Callable[..., bool]:
        def handle(self: Any, producer_task_state: str | None, try_number: int, context: Any) -> bool:
            if producer_task_state in _BUILD_NOT_STARTED:
                from airflow.sdk.exceptions import AirflowRescheduleException

                again = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.poke_interval)
                raise AirflowRescheduleException(again)
            return bool(original(self, producer_task_state, try_number, context))

        return handle

    _wrap_once(BaseConsumerSensor, "_handle_no_dbt_node_status", wrap)


def attach_shared_tests_to_their_last_model(
    tests_per_model: dict[str, list[str]], depends_on: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Which tests a model's test task waits for, as ``dbt build`` runs them: a test of several models (a
    relationship, a reconciliation) counts for the last of them only, the one the others are upstream of — dbt runs
    it after that one and holds that one's children until it passed.

    Cosmos counts such a test for each of its models. Then a dimension's test task waited for a test of the fact
    built after it, and every task downstream of that dimension (the fact's own, the aggregates') waited too: Gold's
    tasks, one level after another, ran after the build instead of beside it. A model left with no test of its own
    keeps them all (its test task needs a result to read)."""
    seen: dict[str, frozenset[str]] = {}

    def ancestors(uid: str) -> frozenset[str]:
        if uid not in seen:
            seen[uid] = frozenset()  # a cycle cannot be in a dbt graph; this only guards the recursion
            parents = depends_on.get(uid, [])
            seen[uid] = frozenset(parents).union(*(ancestors(p) for p in parents))
        return seen[uid]

    models_of: dict[str, list[str]] = {}
    for model, tests in tests_per_model.items():
        for test in tests:
            models_of.setdefault(test, []).append(model)
    last = {
        test: {m for m in models if not any(m in ancestors(other) for other in models if other != m)}
        for test, models in models_of.items()
    }
    out: dict[str, list[str]] = {}
    for model, tests in tests_per_model.items():
        own = [t for t in tests if model in last[t]]
        out[model] = own or list(tests)
    return out


def push_each_value_once() -> None:
    """dbt reports a node's end twice (``LogModelResult`` or ``LogTestResult``, then ``NodeFinished``), and Cosmos's
    producer pushes the node's status and compiled SQL (or its model's test aggregate) on each: the same XCom, set
    twice, each an HTTP call to Airflow's API under one lock that dbt's threads wait on. This skips a push whose key
    already holds the same value from this task instance (a task retry is a new one). It reaches into Cosmos 1.15's
    internals; a test fails if the names it relies on move."""
    from cosmos.operators._watcher import aggregation, base

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        def push(task_instance: Any, key: str, value: Any) -> None:
            with _PUSHED_LOCK:
                # keyed by identity, the instance kept alive beside: its id cannot be reused while it is here
                _, pushed = _PUSHED.setdefault(id(task_instance), (task_instance, {}))
                if key in pushed and pushed[key] == value:
                    return
                original(task_instance=task_instance, key=key, value=value)
                pushed[key] = value

        return push

    for module in (base, aggregation):
        _wrap_once(module, "safe_xcom_push", wrap)


_PUSHED: dict[int, tuple[Any, dict[str, Any]]] = {}  # per task instance: the last value pushed under each key
_PUSHED_LOCK = threading.Lock()  # outside Cosmos's own push lock, always: dbt's threads push concurrently


def _wrap_once(owner: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """``owner.name = wrap(owner.name)``, unless already wrapped: the DAG file runs again at every parse in the same
    process, and a second wrap would stack."""
    original = getattr(owner, name)
    if getattr(original, "weatherpipe_wrapped", False):
        return
    wrapped = wrap(original)
    wrapped.weatherpipe_wrapped = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapped)


def dbt_operator_config() -> dict[str, Any]:
    """What the DAG needs from the settings: the Cosmos task group's project, env (no secret: dbt reads the password
    from the env), vars, profile and target, and the retry policy."""
    from weatherpipe import gold
    from weatherpipe.settings import load_settings

    settings = load_settings()
    env = {k: v for k, v in gold.dbt_env(settings).items() if "PASSWORD" not in k}
    return {
        "project_dir": gold.project_dir(settings),
        "env": env,
        "vars": gold.dbt_vars(settings),
        "profile": gold.PROFILE,
        "target": gold.TARGET,
        "retries": settings.airflow.retries,
        "retry_delay_s": settings.airflow.retry_delay_s,
    }
