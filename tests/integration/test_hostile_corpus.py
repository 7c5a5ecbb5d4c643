"""100+ hostile inputs through the whole pipeline: each lands where its label says, nothing crashes."""

from __future__ import annotations

import collections

import pytest

from ingestion import bronze
from spark_jobs import silver
from tests.support import deadletters, derive, publish_raw
from tests.support.corpus.build_corpus import load, value
from weatherpipe import db, gold
from weatherpipe.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def test_hostile_corpus_through_the_whole_pipeline(settings: Settings, spark) -> None:
    corpus = load()
    expected = collections.Counter(c["expect"] for c in corpus)
    publish_raw(settings, [value(c) for c in corpus], keys=[f"corpus-{c['id']}".encode() for c in corpus])

    drained = bronze.run(settings)  # must not crash
    assert drained.rows_in == len(corpus)
    assert drained.rows_rejected == expected["deadletter"]
    assert drained.rows_out == len(corpus) - expected["deadletter"]
    dead = deadletters(settings)
    assert len(dead) == expected["deadletter"] and all(d["reason"] for d in dead)
    by_key = {d["key"]: d for d in dead}
    for c in corpus:
        if c["expect"] == "deadletter":
            assert f"corpus-{c['id']}" in by_key, c["why"]

    cleaned = silver.run(settings, spark=spark)  # must not crash
    d = cleaned.metrics
    assert cleaned.rows_in == drained.rows_out
    assert cleaned.rows_rejected == expected["quarantine"]
    assert d.inserted == expected["clean"] and d.duplicates_in_batch == expected["duplicate"]
    assert (
        cleaned.rows_in == d.inserted + d.updated + d.stale_vs_staging + d.duplicates_in_batch + cleaned.rows_rejected
    )
    with db.connect(settings.postgres.admin) as conn:
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
