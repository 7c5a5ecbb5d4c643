"""Daily maintenance: bronze compaction (each closed event date's small objects merged into one) and retention,
staging clean-up of orphaned load tables, and Airflow's own `db clean`."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task

BRONZE_DAYS = int(os.environ.get("WEATHERPIPE_BRONZE_RETENTION_DAYS", "30"))
AIRFLOW_DB_DAYS = int(os.environ.get("WEATHERPIPE_AIRFLOW_DB_RETENTION_DAYS", "30"))


@dag(
    dag_id="weather_maintenance",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "weather-data", "retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["weather", "maintenance"],
    doc_md=__doc__,
)
def weather_maintenance() -> None:
    @task
    def bronze_compaction() -> dict:
        from weatherpipe import airflow_tasks

        return airflow_tasks.compact()

    @task
    def bronze_retention() -> dict:
        from weatherpipe import airflow_tasks

        return airflow_tasks.retention(BRONZE_DAYS)

    @task
    def sweep_staging() -> dict:
        from weatherpipe import airflow_tasks

        return airflow_tasks.sweep_staging()

    airflow_db_clean = BashOperator(
        task_id="airflow_db_clean",
        bash_command=(
            "airflow db clean --clean-before-timestamp "
            '"{{ (data_interval_end - macros.timedelta(days=params.days)).isoformat() }}" --yes --skip-archive'
        ),
        params={"days": AIRFLOW_DB_DAYS},
    )

    bronze_compaction() >> bronze_retention() >> sweep_staging() >> airflow_db_clean


weather_maintenance()
