"""The FAISS stages, checked against brute force on hand-made vectors: training (OPQ included), populating with
global ids, exact search (over shards, and past the end of a small base), the tie-aware recall, and the
nprobe/re-rank calibration."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from emsearch.index.exact import exact_knn, exact_knn_sharded
from emsearch.index.faiss_io import COARSE_EF_SEARCH, IVFGroups, populate, shared_coarse
import emsearch.index.ivf as ivf_module
from emsearch.index.ivf import (calibrate, group_blocks, group_shards, recall_at_k, rescore, sample_rows, search_faiss,
                                train_index)
from emsearch.index.choice import IndexParams
from emsearch.index.shards import ShardedEmbeddings, write_shard

D = 32


def clustered(n, seed, topics=50):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, D)).astype(np.float32)
    x = centres[rng.integers(topics, size=n)] + 0.3 * rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    x = clustered(12_000, 0)
    shards = [write_shard(root, i, start, x[start : start + 5000]) for i, start in enumerate(range(0, 12_000, 5000))]
    return ShardedEmbeddings(root, shards, D)


def params(factory, nlist, train_rows=12_000):
    return IndexParams(factory, "ivf", nlist, 4, train_rows, 10_000, 20, None, "test")


def brute(emb, xq, k):
    S = xq @ emb.take(np.arange(emb.ntotal)).T
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, 1), order


def test_groups_and_sampling(emb):
    groups = group_shards(emb.shards, 10_000)
    assert [[s.index for s in g] for g in groups] == [[0, 1], [2]]
    assert [[s.index for s in g] for g in group_shards(emb.shards, 100)] == [[0], [1], [2]]  # never empty
    rows = sample_rows(12_000, 500, seed=3)
    assert len(np.unique(rows)) == 500 and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, sample_rows(12_000, 500, seed=3))


def test_exact_knn_over_shards_matches_brute_force(emb):
    xq = clustered(20, 1)
    D_, I = exact_knn_sharded(emb, xq, 7)
    Dt, It = brute(emb, xq, 7)
    np.testing.assert_allclose(D_, Dt, atol=1e-5)
    np.testing.assert_array_equal(I, It)


def test_exact_knn_pads_past_the_end_of_a_small_base():
    xq = clustered(4, 2)
    xb = clustered(3, 3)
    D_, I = exact_knn(xq, xb, 5)
    S = xq @ xb.T
    np.testing.assert_array_equal(I[:, :3], np.argsort(-S, axis=1, kind="stable"))
    np.testing.assert_allclose(D_[:, :3], -np.sort(-S, axis=1), atol=1e-6)
    assert (I[:, 3:] == -1).all() and (D_[:, 3:] == -np.inf).all()


# RR (a random rotation) stands for OPQ: the same IndexPreTransform wrapper, which must pass nprobe and the
# ID selector through to the IVF index, without OPQ's minute of training.
@pytest.mark.slow
@pytest.mark.parametrize("factory", ["IVF32,PQ4", "RR32,IVF32,PQ4"])
def test_trained_groups_return_global_rows(emb, factory):
    trained, on_gpu = train_index(params(factory, 32), emb)
    assert trained.is_trained and trained.ntotal == 0 and on_gpu == (faiss.get_num_gpus() > 0)
    groups = [populate(faiss.clone_index(trained), group_blocks(emb, g)) for g in group_shards(emb.shards, 10_000)]
    assert [g.ntotal for g in groups] == [10_000, 2000]
    xq = clustered(40, 2)
    heap = faiss.ResultHeap(len(xq), 300, keep_max=True)
    for g in groups:
        heap.add_result(*g.search(xq, 300, params=faiss.SearchParametersIVF(nprobe=32)))
    heap.finalize()
    D_, I = rescore(xq, heap.I, 10, emb)
    Dt, It = brute(emb, xq, 10)
    assert recall_at_k(D_, Dt, 10) >= 0.95  # every list probed: only the 4-byte PQ ranking, fixed by re-scoring
    assert (I >= 10_000).any() and (I < 10_000).any()  # both groups answer, with global ids
    # search parameters reach the IVF index: one list finds less, a selector keeps only its rows
    _, I1 = groups[0].search(xq, 10, params=faiss.SearchParametersIVF(nprobe=1))
    _, I32 = groups[0].search(xq, 10, params=faiss.SearchParametersIVF(nprobe=32))
    assert recall_at_k(*rescore(xq, I1, 10, emb)[:1], Dt, 10) < recall_at_k(*rescore(xq, I32, 10, emb)[:1], Dt, 10)
    bitmap = np.packbits(np.arange(emb.ntotal) % 2 == 0, bitorder="little")
    sel = faiss.IDSelectorBitmap(emb.ntotal, faiss.swig_ptr(bitmap))
    _, Ie = groups[0].search(xq, 10, params=faiss.SearchParametersIVF(nprobe=32, sel=sel))
    assert (Ie % 2 == 0).all()


@pytest.mark.parametrize("factory", ["IVF32,PQ4", "RR32,IVF32_HNSW8,PQ4"])
def test_groups_of_one_build_share_one_coarse_assignment(emb, factory, monkeypatch):
    """Searching G groups assigns each query to its lists once, not G times, and finds what searching each
    group whole finds: the same rows and scores, with a selector and at any nprobe."""
    trained, _ = train_index(params(factory, 32, train_rows=4000), emb)
    groups = [populate(faiss.clone_index(trained), group_blocks(emb, g)) for g in group_shards(emb.shards, 5000)]
    assert len(groups) == 3
    shared = shared_coarse(groups)
    assert isinstance(shared, IVFGroups) and list(shared) == groups
    calls = []
    assign = ivf_module.coarse_assign
    monkeypatch.setattr(ivf_module, "coarse_assign", lambda *a: calls.append(1) or assign(*a))
    xq = clustered(50, 4)
    bitmap = np.packbits(np.arange(emb.ntotal) % 3 != 0, bitorder="little")
    sel = faiss.IDSelectorBitmap(emb.ntotal, faiss.swig_ptr(bitmap))
    for nprobe, selector in ((1, None), (4, sel), (32, None)):
        p = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector) if selector else \
            faiss.SearchParametersIVF(nprobe=nprobe)
        calls.clear()
        D1, I1 = search_faiss(shared, xq, 20, p)
        assert calls == [1]  # one coarse step for the three groups
        D2, I2 = search_faiss(list(groups), xq, 20, p)  # a plain list: each group searched whole
        np.testing.assert_array_equal(I1, I2)
        np.testing.assert_allclose(D1, D2, rtol=1e-6)
        if selector is not None:
            assert (I1[I1 >= 0] % 3 != 0).all()
    # groups trained apart (other centroids) are searched one by one
    other, _ = train_index(params(factory, 32, train_rows=4000), emb, seed=1)
    mixed = [groups[0], populate(faiss.clone_index(other), group_blocks(emb, [emb.shards[2]]))]
    assert not isinstance(shared_coarse(mixed), IVFGroups)


def test_an_hnsw_coarse_quantizer_files_vectors_as_broadly_as_queries_search(tmp_path):
    """faiss's default breadth (16) filed 44% of 10M vectors in a list other than their nearest; the trained index
    carries the search breadth into every group populated from it."""
    x = clustered(12_000, 5, topics=400)
    emb = ShardedEmbeddings(tmp_path, [write_shard(tmp_path, 0, 0, x)], D)
    trained, _ = train_index(params("IVF256_HNSW8,PQ4", 256, train_rows=12_000), emb)
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(trained).quantizer)
    assert quantizer.hnsw.efSearch >= COARSE_EF_SEARCH
    group = populate(faiss.clone_index(trained), group_blocks(emb, emb.shards))
    ivf = faiss.extract_index_ivf(group)
    assert faiss.downcast_index(ivf.quantizer).hnsw.efSearch >= COARSE_EF_SEARCH
    lists = np.empty(emb.ntotal, dtype=np.int64)
    for c in range(ivf.nlist):
        ids = faiss.rev_swig_ptr(ivf.invlists.get_ids(c), ivf.invlists.list_size(c))
        lists[np.array(ids, dtype=np.int64)] = c
    centroids = quantizer.reconstruct_n(0, quantizer.ntotal)
    nearest = (emb.take(np.arange(emb.ntotal)) @ centroids.T).argmax(1)
    assert (lists == nearest).mean() > 0.97


def test_recall_counts_ties_as_found():
    D_true = np.array([[0.9, 0.8, 0.8, 0.7]], dtype=np.float32)
    assert recall_at_k(np.array([[0.9, 0.8, 0.8, 0.7]], np.float32), D_true, 3) == 1.0  # same scores, any rows
    assert recall_at_k(np.array([[0.9, 0.8, 0.7, 0.6]], np.float32), D_true, 3) == pytest.approx(2 / 3)
    missing = np.array([[0.9, -np.inf, -np.inf]], np.float32)
    assert recall_at_k(missing, np.array([[0.9, 0.5, -np.inf]], np.float32), 3) == 0.5


@pytest.mark.slow
def test_calibration_picks_the_cheapest_point_reaching_the_target(emb):
    trained, _ = train_index(params("IVF64,PQ4", 64), emb)
    index = populate(faiss.clone_index(trained), group_blocks(emb, emb.shards))
    calls = []

    def search(xq, k, nprobe, rerank):
        calls.append((nprobe, rerank))
        _, I = index.search(xq, max(k, rerank), params=faiss.SearchParametersIVF(nprobe=nprobe))
        return rescore(xq, I, k, emb)

    nprobe, rerank, curve = calibrate(search, emb, 64, 40, queries=100, target=0.95)
    assert [(c["nprobe"], c["rerank"]) for c in curve] == calls
    chosen = next(c for c in curve if (c["nprobe"], c["rerank"]) == (nprobe, rerank))
    assert chosen["recall"] >= 0.95 and chosen is curve[-1]
    assert all(c["recall"] < 0.95 for c in curve[:-1])
    # an unreachable target returns the best point measured
    nprobe, rerank, curve = calibrate(search, emb, 64, 40, queries=50, target=1.01)
    assert max(c["recall"] for c in curve) == next(c["recall"] for c in curve
                                                   if (c["nprobe"], c["rerank"]) == (nprobe, rerank))
    assert max(c["rerank"] for c in curve) == 320
