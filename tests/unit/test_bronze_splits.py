"""Silver's read splits: many objects per Spark task, spread by bytes, not one task per object."""

from __future__ import annotations

from spark_jobs.bronze_source import BYTES_PER_TASK, split_by_size


def test_a_handful_of_small_objects_is_one_task() -> None:
    assert split_by_size({"a": 10, "b": 20, "c": 5}, max_groups=4) == [["a", "b", "c"]]
    assert split_by_size({}, max_groups=4) == []


def test_a_backfill_is_spread_by_bytes_over_at_most_max_groups() -> None:
    sizes = {f"k{i:04d}": (i % 7 + 1) * 1024 * 1024 for i in range(900)}  # 3.5 GiB in 900 objects of 1-7 MiB
    groups = split_by_size(sizes, max_groups=4)
    assert len(groups) == 4
    assert sorted(k for g in groups for k in g) == sorted(sizes)  # every object exactly once
    loads = [sum(sizes[k] for k in g) for g in groups]
    assert max(loads) - min(loads) <= max(sizes.values())  # balanced within one object


def test_as_many_tasks_as_the_bytes_need() -> None:
    sizes = {"big1": BYTES_PER_TASK, "big2": BYTES_PER_TASK, "small": 1}
    groups = split_by_size(sizes, max_groups=8)
    assert len(groups) == 3 and ["big1"] in groups and ["big2"] in groups
    assert split_by_size(sizes, max_groups=2) == [["big1", "small"], ["big2"]]
