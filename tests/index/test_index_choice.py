"""The index choice table: flat when small, IVF-PQ inside the faiss guidelines, the memory budget respected."""

from __future__ import annotations

import math

import faiss
import pytest

from emsearch.index.choice import (FLAT_MAX_ROWS, IndexChoiceError, choose_index, ivfpq_bytes, parse_bytes)

GiB = 1 << 30


def test_parse_bytes():
    assert parse_bytes("4G") == 4 * GiB and parse_bytes("512m") == 512 << 20 and parse_bytes("1.5GiB") == 3 * GiB // 2
    assert parse_bytes("1000") == 1000
    with pytest.raises(ValueError, match="cannot read 'lots' as a memory size"):
        parse_bytes("lots")


def test_flat_below_the_threshold():
    p = choose_index(FLAT_MAX_ROWS - 1, 256, 4 * GiB)
    assert (p.factory, p.kind, p.rerank, p.train_rows) == ("Flat", "flat", 0, 0)


@pytest.mark.parametrize("n", [FLAT_MAX_ROWS, 1_000_000, 10_000_000, 100_000_000])
def test_ivfpq_follows_the_guidelines(n):
    d = 256
    p = choose_index(n, d, 64 * GiB)
    assert p.kind == "ivf" and 4 * math.sqrt(n) <= p.nlist <= 16 * math.sqrt(n)
    assert p.nlist & (p.nlist - 1) == 0  # a power of two
    assert 39 * p.nlist <= p.train_rows <= n
    assert p.m == 32 and p.estimated_bytes <= 64 * GiB and p.rerank > 0  # 8-dim sub-vectors
    coarse = f"IVF{p.nlist}_HNSW32" if p.nlist >= 1 << 16 else f"IVF{p.nlist}"
    assert p.factory == f"OPQ32,{coarse},PQ32"
    index = faiss.index_factory(d, p.factory, faiss.METRIC_INNER_PRODUCT)  # a valid factory string
    assert faiss.extract_index_ivf(index).nlist == p.nlist


def test_budget_shrinks_pq_then_refuses():
    n, d = 10_000_000, 256
    roomy = choose_index(n, d, 64 * GiB)
    tight = choose_index(n, d, ivfpq_bytes(n, d, roomy.nlist, 16) + 1)
    assert tight.m == 16 and tight.estimated_bytes <= ivfpq_bytes(n, d, roomy.nlist, 16) + 1
    assert choose_index(1_000_000, 1024, 64 * GiB).m == 64
    with pytest.raises(IndexChoiceError, match="raise --max-index-memory"):
        choose_index(n, d, 100 << 20)


def test_flat_over_budget_becomes_ivfpq_and_training_fits_the_budget():
    p = choose_index(90_000, 256, 60 << 20)  # flat would need 92 MB
    assert p.kind == "ivf" and p.train_rows * 256 * 4 <= (60 << 20) // 2
    assert 39 * p.nlist <= p.train_rows


def test_factory_override():
    p = choose_index(5000, 64, GiB, factory="IVF32,PQ16x4")
    assert (p.kind, p.nlist, p.m, p.train_rows) == ("ivf", 32, 16, 5000)
    assert choose_index(5000, 64, GiB, factory="Flat").kind == "flat"
    assert choose_index(5000, 64, GiB, factory="HNSW16").kind == "other"
    with pytest.raises(IndexChoiceError, match="not a faiss factory string"):
        choose_index(5000, 64, GiB, factory="IVF32,Nonsense")
    with pytest.raises(IndexChoiceError, match="the corpus only 100 rows"):
        choose_index(100, 64, GiB, factory="IVF1024,Flat")
