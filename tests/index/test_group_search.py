"""An index searched group by group (each FAISS group opened alone, as a `mine --ray` worker holds it) and merged
in group order answers exactly as the index searched whole."""

from __future__ import annotations

import numpy as np
import pytest

from emsearch.index import choice, reader
from emsearch.index.reader import Index
from toy_index import build_toy_index


@pytest.fixture()
def grouped(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(choice, "GROUP_ROWS", 128)  # two shards of 64 rows per FAISS file
    return build_toy_index(tmp_path, tiny_model, index_factory="IVF4,Flat").path


@pytest.mark.parametrize("langs", [None, ["eng"]])
def test_groups_searched_apart_and_merged_answer_as_the_whole(grouped, tiny_model, langs, monkeypatch):
    monkeypatch.setattr(reader, "EXACT_SUBSET_ROWS", 0)  # a language goes through FAISS, as a large one does
    with Index.open(grouped, model=tiny_model) as whole:
        assert whole.groups >= 3 and not whole.scans_exactly(langs)
        xq = whole.embeddings(np.arange(0, whole.ntotal, 7))
        want = whole.search_vectors(xq, 5, langs=langs, nprobe=2)
        parts = []
        for g in range(whole.groups):
            with Index.open(grouped, whole.encoder, groups=[g]) as one:
                parts.append(one.group_candidates(xq, 5, langs=langs, nprobe=2))
        got = whole.search_vectors(xq, 5, langs=langs, nprobe=2, candidates=parts)
    assert np.array_equal(want[1], got[1]) and np.array_equal(want[0], got[0])
    assert (want[1] >= 0).all()
