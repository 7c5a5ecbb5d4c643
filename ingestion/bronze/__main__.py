"""``python -m ingestion.bronze [--follow]``: the bronze stage in this process (the crash tests run it so)."""

from __future__ import annotations

from ingestion.bronze.stage import run


def main() -> None:  # pragma: no cover - the crash tests kill this process
    import sys

    from weatherpipe.log import bootstrap

    run(bootstrap("json"), follow="--follow" in sys.argv)


if __name__ == "__main__":  # pragma: no cover
    main()
