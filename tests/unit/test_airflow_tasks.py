"""The pure helpers of the Airflow tasks (the DAG's use of them is tested in tests/integration/airflow)."""

from __future__ import annotations

from weatherpipe.airflow_tasks import attach_shared_tests_to_their_last_model

# stg -> dim -> fct -> agg, and a dimension beside them that fct reads
DEPENDS_ON = {"dim": ["stg"], "fct": ["dim", "other"], "agg": ["fct"], "other": [], "stg": []}


def test_a_test_of_several_models_counts_for_the_last_of_them_only() -> None:
    tests = {
        "stg": ["not_null_stg", "recompute_stg_dim_fct"],
        "dim": ["unique_dim", "relationship_fct_dim", "recompute_stg_dim_fct"],
        "fct": ["not_null_fct", "relationship_fct_dim", "recompute_stg_dim_fct", "reconcile_fct_agg"],
        "agg": ["unique_agg", "reconcile_fct_agg"],
    }
    assert attach_shared_tests_to_their_last_model(tests, DEPENDS_ON) == {
        "stg": ["not_null_stg"],
        "dim": ["unique_dim"],
        "fct": ["not_null_fct", "relationship_fct_dim", "recompute_stg_dim_fct"],
        "agg": ["unique_agg", "reconcile_fct_agg"],
    }


def test_models_neither_upstream_of_the_other_both_keep_the_test() -> None:
    """dbt holds the children of both: neither is built after the other."""
    tests = {"dim": ["dim_matches_other"], "other": ["dim_matches_other", "unique_other"]}
    assert attach_shared_tests_to_their_last_model(tests, DEPENDS_ON) == tests


def test_a_model_whose_only_tests_are_shared_keeps_them() -> None:
    """Its test task needs an aggregate to read: without a test of its own, it still waits for the shared ones."""
    tests = {"dim": ["relationship_fct_dim"], "fct": ["relationship_fct_dim", "not_null_fct"]}
    assert attach_shared_tests_to_their_last_model(tests, DEPENDS_ON) == tests
