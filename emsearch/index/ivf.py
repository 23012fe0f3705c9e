"""The FAISS side of a build, from the fp16 shards: train on a sample, populate groups, calibrate nprobe, merge.

Each stage is a plain function over arrays and files, so the build can time it, resume between stages, and run
`populate_serialized` inside a Ray task. Memory: training holds `train_rows` float32 vectors; populating holds
one group's codes plus one 64k-row block; calibration streams the shards once; merging memory-maps the groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import faiss
import numpy as np

from emsearch.index.choice import IndexParams
from emsearch.index.exact import exact_knn_sharded
from emsearch.index.faiss_io import IVFGroups, coarse_assign, coarse_search_breadth
from emsearch.index.shards import Shard, ShardedEmbeddings

CALIBRATION_QUERIES = 256
CALIBRATION_TARGET = 0.95  # recall@10 against exact search, self-matches excluded
RERANK_CHUNK = 256  # queries re-scored at a time: bounds the (chunk·candidates, dim) gather


def sample_rows(ntotal: int, n: int, seed: int) -> np.ndarray:
    """n distinct rows of [0, ntotal), sorted (sorted reads are sequential on disk)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ntotal, size=min(n, ntotal), replace=False))


def train_index(params: IndexParams, emb: ShardedEmbeddings, seed: int = 0) -> tuple[faiss.Index, bool]:
    """An empty, trained index taking global row ids; and whether a GPU did the k-means."""
    index = faiss.index_factory(emb.dim, params.factory, faiss.METRIC_INNER_PRODUCT)
    _skip_polysemous_training(index)
    on_gpu = False
    if not index.is_trained:
        on_gpu = _cluster_on_gpu(index)
        index.train(emb.take(sample_rows(emb.ntotal, params.train_rows, seed)))
    coarse_search_breadth(index)
    if faiss.try_extract_index_ivf(index) is None:
        index = faiss.IndexIDMap2(index)  # only IVF indexes store ids themselves
    return index, on_gpu


def _skip_polysemous_training(index: faiss.Index) -> None:
    """The factory's PQ indexes also train a Hamming-friendly code order for polysemous search, which emsearch
    never uses; it was ~85% of PQ training time (measured: 7.0 s → 1.0 s for PQ4 on 12k vectors)."""
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    if hasattr(base, "do_polysemous_training"):
        base.do_polysemous_training = False


def _cluster_on_gpu(index: faiss.Index) -> bool:
    """Run the IVF k-means on every GPU when faiss-gpu sees one (the faiss idiom: a GPU clustering index)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or faiss.get_num_gpus() == 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return False
    flat = faiss.IndexFlatIP(ivf.d) if ivf.metric_type == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(ivf.d)
    ivf.clustering_index = faiss.index_cpu_to_all_gpus(flat)
    return True


def group_shards(shards: Sequence[Shard], group_rows: int) -> list[list[Shard]]:
    """Consecutive shards, at most `group_rows` rows per group (at least one shard each)."""
    groups: list[list[Shard]] = []
    for shard in sorted(shards, key=lambda s: s.start):
        if groups and sum(s.rows for s in groups[-1]) + shard.rows <= group_rows:
            groups[-1].append(shard)
        else:
            groups.append([shard])
    return groups


def group_blocks(emb: ShardedEmbeddings, group: Sequence[Shard], block_rows: int = 65536):
    """(first row, float16 block) over a group's rows."""
    return emb.iter_blocks(block_rows, shards=group)


def recall_at_k(D: np.ndarray, D_true: np.ndarray, k: int) -> float:
    """Share of the true top-k found, judged by score so that exact ties (duplicate sentences) count as found.

    Both score sets are inner products of the same stored fp16 vectors, so they agree to float32 rounding."""
    valid = D_true[:, :k] > -np.inf
    kth = np.where(valid, D_true[:, :k], np.inf).min(1, keepdims=True) - 1e-5  # the k-th (or last) true score
    found = np.minimum(((D[:, :k] >= kth) & (D[:, :k] > -np.inf)).sum(1), valid.sum(1))
    return float(found.sum() / max(valid.sum(), 1))


def calibrate(search, emb: ShardedEmbeddings, nlist: int, rerank: int, *, k: int = 10,
              target: float = CALIBRATION_TARGET, queries: int = CALIBRATION_QUERIES,
              seed: int = 1) -> tuple[int, int, list[dict[str, float]]]:
    """The cheapest (nprobe, rerank) whose recall@k reaches `target`, queries being sampled stored vectors.

    `search(xq, k, nprobe, rerank)` → (D, I) is the index's own search. nprobe doubles from 1; when doubling
    stops helping (the candidates, not the lists, are missing), the re-ranked candidates double instead, up to
    8× `rerank`. A query's own row is removed from both result lists, so recall is measured on its neighbours.
    Returns (nprobe, rerank, curve); if the target is out of reach, the best point found.
    """
    rows = sample_rows(emb.ntotal, queries, seed)
    xq = emb.take(rows)
    D_true, _ = _without_self(*exact_knn_sharded(emb, xq, k + 1), rows, k)
    curve: list[dict[str, float]] = []
    for candidates in (rerank, 2 * rerank, 4 * rerank, 8 * rerank):
        nprobe = 1
        while True:
            D, _ = _without_self(*search(xq, k + 1, nprobe, candidates), rows, k)
            curve.append({"nprobe": nprobe, "rerank": candidates, "recall": round(recall_at_k(D, D_true, k), 4)})
            if curve[-1]["recall"] >= target:
                return nprobe, candidates, curve
            flat = len(curve) > 1 and curve[-2]["rerank"] == candidates and \
                curve[-1]["recall"] - curve[-2]["recall"] < 0.002 and nprobe >= 8
            if nprobe >= nlist or flat:
                break
            nprobe = min(nprobe * 2, nlist)
    best = max(curve, key=lambda c: (c["recall"], -c["rerank"], -c["nprobe"]))
    return int(best["nprobe"]), int(best["rerank"]), curve


def _without_self(D: np.ndarray, I: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    keep = I != rows[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept entries first, in rank order
    return np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)


def search_faiss(indexes: Sequence[faiss.Index], xq: np.ndarray, k: int,
                 params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of xq over every FAISS index (groups hold disjoint rows): D, I (n, k), best first."""
    return merge_results(group_results(indexes, xq, k, params), len(xq), k)


def merge_results(results: Iterable[tuple[np.ndarray, np.ndarray]], n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of several groups' (D, I), taken in order (the same order gives the same ties): one group's
    results at a time, so memory holds one group's plus the k kept."""
    heap = faiss.ResultHeap(n, k, keep_max=True)
    for D, I in results:
        heap.add_result(np.ascontiguousarray(D, dtype=np.float32), np.ascontiguousarray(I, dtype=np.int64))
    heap.finalize()
    return heap.D, heap.I


def group_results(indexes: Sequence[faiss.Index], xq: np.ndarray, k: int,
                  params: faiss.SearchParameters | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each index's top-k (D, I) of xq, in order. The groups of one build (`IVFGroups`) share one coarse
    assignment of the queries: each group then scans the lists it was given (`search_preassigned`)."""
    if not (isinstance(indexes, IVFGroups) and (params is None or isinstance(params, faiss.SearchParametersIVF))):
        for index in indexes:
            yield index.search(xq, k, params=params)
        return
    nprobe = int(min(params.nprobe if params is not None else indexes.ivfs[0].nprobe, indexes.ivfs[0].nlist))
    params = params if params is not None else faiss.SearchParametersIVF(nprobe=nprobe)
    xt, Dq, Iq = coarse_assign(indexes, np.ascontiguousarray(xq, dtype=np.float32), nprobe)
    for ivf in indexes.ivfs:
        D = np.empty((len(xt), k), dtype=np.float32)
        I = np.empty((len(xt), k), dtype=np.int64)
        ivf.search_preassigned_c(len(xt), faiss.swig_ptr(xt), k, faiss.swig_ptr(Iq), faiss.swig_ptr(Dq),
                                 faiss.swig_ptr(D), faiss.swig_ptr(I), False, params)
        yield D, I


def rescore(xq: np.ndarray, I: np.ndarray, k: int, emb: ShardedEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate rows I (n, kk) exactly against the stored vectors; keep the best k of each row."""
    n, kk = I.shape
    D = np.full((n, kk), -np.inf, dtype=np.float32)
    for lo in range(0, n, RERANK_CHUNK):
        Ic = I[lo : lo + RERANK_CHUNK]
        valid = Ic >= 0
        rows, inverse = np.unique(Ic[valid], return_inverse=True)
        xb = emb.take(rows)  # (u, d)
        q = np.nonzero(valid)[0]
        D[lo : lo + RERANK_CHUNK][valid] = np.einsum("ij,ij->i", xq[lo + q], xb[inverse])
    order = np.argsort(-D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)
