"""Bronze chunk ranges: deterministic, never across a block, so a restart rewrites the same keys."""

from __future__ import annotations

from ingestion.bronze.consumer import Message
from ingestion.bronze.sink import split_ranges


def test_split_ranges_never_cross_a_block() -> None:
    msgs = [Message(0, o, None, None, b"") for o in range(95, 215)]
    ranges = list(split_ranges(msgs, 50))
    assert [(r[0].offset, r[-1].offset) for r in ranges] == [(95, 99), (100, 149), (150, 199), (200, 214)]
