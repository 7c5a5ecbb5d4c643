"""The hostile-input corpus is current and large enough."""

from __future__ import annotations

from tests.support.corpus.build_corpus import build, load


def test_corpus_file_is_current_and_large_enough() -> None:
    corpus = load()
    assert len(corpus) >= 100
    assert [(c["expect"], c["why"]) for c in corpus] == [(c["expect"], c["why"]) for c in build()]
