"""Run every bench and print one table of ratios (``make bench``)."""

from __future__ import annotations

import importlib
import logging
import sys

from bench.common import BenchRow

BENCHES = [
    "bench.bench_ingest",
    "bench.bench_bronze",
    "bench.bench_durability",
    "bench.bench_silver",
    "bench.bench_spark",
    "bench.bench_gold",
    "bench.bench_hourly",
    "bench.bench_backfill",
]


def main(names: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)  # "task ran over 100 ms" on a busy machine
    logging.getLogger("kafka.cluster").setLevel(logging.CRITICAL)  # "Metadata refresh: failed Cancelled" at close
    rows: list[BenchRow] = []
    for name in names or BENCHES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        rows.extend(module.run())
    print(f"{'stage':<8} {'measure':<52} {'ours':>12} {'reference':>12} {'ratio':>7}  target    note")
    for r in rows:
        flag = {True: "ok", False: "MISS", None: ""}[r.ok()]
        print(
            f"{r.stage:<8} {r.measure:<52} {r.ours:>12.1f} {r.reference:>12.1f} {r.ratio:>7.2f}  "
            f"{r.target:<8} {flag:<4} {r.note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
