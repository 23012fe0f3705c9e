"""Exact inner-product kNN, the one brute-force search behind every caller: the restricted search of a small
language subset, the calibration's ground truth over the shards, and the mining reference.

    D, I = exact_knn(xq, xb, k)             # (nq, k), best first; I = -1 and D = -inf past the end of xb
    D, I = exact_knn_sharded(emb, xq, k)    # the same over every stored row, one block at a time
"""

from __future__ import annotations

import faiss
import numpy as np

from emsearch.index.shards import ShardedEmbeddings


def exact_knn(xq: np.ndarray, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of xq (nq, d) against xb (nb, d): D, I (nq, k), padded with -inf / -1 when nb < k
    (faiss leaves those slots to the caller)."""
    kk = min(k, len(xb))
    D, I = faiss.knn(xq, xb, kk, metric=faiss.METRIC_INNER_PRODUCT)
    if kk < k:
        D = np.pad(D, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        I = np.pad(I, ((0, 0), (0, k - kk)), constant_values=-1)
    return D, I


def exact_knn_sharded(emb: ShardedEmbeddings, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of xq over every stored row (global row ids), streaming the shards: memory is one block."""
    heap = faiss.ResultHeap(len(xq), k, keep_max=True)
    for start, block in emb.iter_blocks():
        D, I = exact_knn(xq, block, k)
        heap.add_result(D, np.where(I >= 0, I + start, -1))
    heap.finalize()
    return heap.D, heap.I
