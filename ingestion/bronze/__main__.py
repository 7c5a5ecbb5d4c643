"""``python -m ingestion.bronze [--follow | compact]``: the bronze stage, or a compaction, in this process (the crash
tests run it so)."""

from __future__ import annotations

from ingestion.bronze.stage import run


def main() -> None:  # pragma: no cover - the crash tests kill this process
    import sys

    from weatherpipe.log import bootstrap

    settings = bootstrap("json")
    if "compact" in sys.argv[1:]:
        from ingestion.bronze.compaction import compact

        compact(settings)
    else:
        run(settings, follow="--follow" in sys.argv)


if __name__ == "__main__":  # pragma: no cover
    main()
