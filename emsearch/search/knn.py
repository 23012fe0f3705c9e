"""One chunk of a mining side's kNN search, shared by the local search and the Ray actors."""

from __future__ import annotations

import numpy as np

from emsearch.errors import EmsearchError
from emsearch.search.mine_config import MineConfig


def knn_chunk(xq: np.ndarray, base, lang: str, base_rows: np.ndarray, cfg: MineConfig,
              candidates=None) -> tuple[np.ndarray, np.ndarray]:
    """k + 1 nearest `lang` rows of `base` for the vectors xq: (D, I) with I a position in base_rows, -1 for none.
    `candidates`: every FAISS group's `group_candidates`, searched by the workers holding them (`mine --ray`)."""
    D, I = base.search_vectors(xq, cfg.k + 1, langs=[lang], nprobe=cfg.nprobe,
                               candidates=candidates)  # (c, k + 1) global rows of `base`
    valid = I >= 0
    local = np.searchsorted(base_rows, np.where(valid, I, 0))
    local = np.minimum(local, len(base_rows) - 1)
    if not np.array_equal(base_rows[local][valid], I[valid]):
        raise EmsearchError(f"{base.path} returned rows outside language {lang}: the index is damaged; rebuild it")
    return np.where(valid, D, 0).astype(np.float32), np.where(valid, local, -1).astype(np.int64)
