"""Which FAISS index to build, from the corpus size N, the dimension d and a memory budget (autofaiss-style).

The table (vectors are unit length, the metric is inner product = cosine):

| N                      | index                              | why |
|------------------------|------------------------------------|-----|
| N < 100,000            | `Flat` (exact, IndexFlatIP)        | an exact scan of 100k×256 floats is ~3 ms per query and all-vs-all mining of 100k rows under a minute on 2 cores; nothing to train, no approximation |
| 100,000 ≤ N, nlist < 2^16 | `OPQ{m},IVF{nlist},PQ{m}`       | faiss guidelines: IVF with nlist between 4·√N and 16·√N; PQ codes of m bytes; OPQ rotation balances the sub-spaces |
| nlist ≥ 2^16 (N > 67M) | `OPQ{m},IVF{nlist}_HNSW32,PQ{m}`   | assigning a vector to one of ≥64k centroids by exhaustive scan dominates add and search time; an HNSW coarse quantizer makes it logarithmic (as in Meta's mining pipelines) |

- nlist is the smallest power of two ≥ 4·√N, so inside [4·√N, 8·√N): the lower half of the faiss range, since
  k-means costs ∝ nlist² (its sample grows with nlist) and dominates a CPU build, while scanning a few more
  lists of PQ codes per query is cheap. It is halved while the training sample would hold fewer than 39·nlist
  vectors (the faiss minimum for k-means).
- The training sample is max(40·nlist, 65,536) vectors (65,536 is what OPQ and PQ use at most), at most N and at
  most half the memory budget as float32: training never needs the corpus in memory.
- m (PQ bytes per vector) is min(64, d/8): sub-vectors of at least 8 dimensions (PQ64 on 1024-d LASER vectors
  is the stopes mining default; on a 2-core CPU, training PQ64 on 256-d, i.e. 4-dim sub-vectors, took 16× the
  time of PQ32, for codes that re-ranking makes unnecessary). m is halved while the index (codes + 8-byte ids
  + centroids + OPQ matrix) exceeds the budget, down to 4; below that the budget is an error.
- PQ ranks candidates approximately, so every non-flat index re-scores `rerank` (100) candidates exactly against
  the stored fp16 vectors; nprobe, and the candidate count if the lists are not what limits recall, are then
  calibrated at build time so recall@10 against exact search is at least 0.95 (see `ivf.calibrate`).
- Flat is also dropped for IVF-PQ when N·d·4 bytes exceeds the budget.

`--index-factory` overrides the choice with any faiss factory string (the budget is then the user's call).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import faiss

from emsearch.errors import EmsearchError

FLAT_MAX_ROWS = 100_000
# An exact (flat) coarse scan of 16,384 centroids took 111 µs a vector on 2 cores, HNSW at the breadth that files
# 94% of vectors in their nearest list 207 µs (benchmarks/README.md, "Scaling"): exact up to 32,768 lists.
HNSW_MIN_NLIST = 1 << 16
GROUP_ROWS = 1 << 20  # rows per index file: ~40 MB of PQ32 codes and ids
RERANK = 100  # candidates re-scored exactly against the fp16 vectors
MIN_TRAIN = 65_536


class IndexChoiceError(EmsearchError):
    """No index fits the request (budget too small, unusable factory string)."""


@dataclass(frozen=True)
class IndexParams:
    """What to build; saved in the manifest."""

    factory: str  # faiss index_factory string
    kind: str  # "flat" (exact, built from the shards when opened), "ivf" or "other"
    nlist: int | None
    m: int | None  # PQ bytes per vector
    train_rows: int  # vectors sampled for training (0: nothing to train)
    group_rows: int  # rows per index file
    rerank: int  # candidates re-scored exactly (0 for an exact index)
    estimated_bytes: int | None  # index memory at query time
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_bytes(text: str) -> int:
    """'4G', '512M', '1.5GB', '1000000' → bytes (powers of 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not match:
        raise EmsearchError(f"cannot read {text!r} as a memory size: write e.g. 512M, 4G or 1.5T")
    value, unit = float(match.group(1)), match.group(2)
    return int(value * 1024 ** " kmgt".index(unit or " "))


def format_bytes(n: int) -> str:
    """Bytes → the shortest exact form parse_bytes reads back ('4G', '512M', '1000')."""
    for unit in "TGMK":
        scale = 1024 ** (" KMGT".index(unit))
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def ivfpq_bytes(n: int, d: int, nlist: int, m: int) -> int:
    """Query-time memory of OPQ{m},IVF{nlist}[_HNSW32],PQ{m}: codes and ids, centroids, codebooks, rotation."""
    hnsw = nlist * 32 * 2 * 4 if nlist >= HNSW_MIN_NLIST else 0
    return n * (m + 8) + nlist * d * 4 + 256 * d * 4 + d * d * 4 + hnsw


def choose_index(n: int, d: int, max_memory: int, factory: str | None = None) -> IndexParams:
    """The index for n unit vectors of dimension d within `max_memory` bytes (or the given factory string)."""
    if n < 1:
        raise IndexChoiceError("nothing to index: the corpus has no rows")
    if factory is not None:
        return _from_factory(factory, n, d)
    flat_bytes = n * d * 4
    if n < FLAT_MAX_ROWS and flat_bytes <= max_memory:
        return IndexParams("Flat", "flat", None, None, 0, n, 0, flat_bytes,
                           f"{n:,} < {FLAT_MAX_ROWS:,} vectors: exact search")
    nlist = 1 << math.ceil(math.log2(4 * math.sqrt(n)))
    cap = min(n, max_memory // 2 // (d * 4))
    while nlist > 16 and 39 * nlist > cap:
        nlist //= 2
    if 39 * nlist > cap:
        raise IndexChoiceError(f"{n:,} vectors are too few to train an IVF index within the memory budget; "
                               "raise --max-index-memory or pass --index-factory Flat")
    m = _largest_divisor(d, min(64, max(d // 8, 4)))
    while m > 4 and ivfpq_bytes(n, d, nlist, m) > max_memory:
        m = _largest_divisor(d, m // 2)
    needed = ivfpq_bytes(n, d, nlist, m)
    if m < 4 or needed > max_memory:
        raise IndexChoiceError(f"{n:,} vectors of dimension {d} need at least {needed / 2**30:.2f} GiB as "
                               f"IVF-PQ{m}; raise --max-index-memory")
    coarse = f"IVF{nlist}_HNSW32" if nlist >= HNSW_MIN_NLIST else f"IVF{nlist}"
    why = "over the flat threshold" if n >= FLAT_MAX_ROWS else "flat exceeds the memory budget"
    return IndexParams(f"OPQ{m},{coarse},PQ{m}", "ivf", nlist, m, min(cap, max(40 * nlist, MIN_TRAIN)),
                       GROUP_ROWS, RERANK, needed, f"{n:,} vectors, {why}: nlist≥4·√N, PQ{m} within budget")


def _largest_divisor(d: int, at_most: int) -> int:
    """Largest m ≤ at_most dividing d (PQ needs d divisible by m)."""
    for m in range(max(at_most, 1), 0, -1):
        if d % m == 0:
            return m
    return 1


def _from_factory(factory: str, n: int, d: int) -> IndexParams:
    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise IndexChoiceError(f"--index-factory {factory!r} is not a faiss factory string for d={d} ({first}); "
                               "see https://github.com/facebookresearch/faiss/wiki/The-index-factory") from None
    if factory.strip() == "Flat":
        return IndexParams("Flat", "flat", None, None, 0, n, 0, n * d * 4, "--index-factory Flat")
    ivf = _ivf_of(index)
    nlist = ivf.nlist if ivf is not None else None
    pq = re.search(r"PQ(\d+)", factory)
    m = int(pq.group(1)) if pq else None
    train_rows = 0 if index.is_trained else min(n, max(40 * (nlist or 0), MIN_TRAIN))
    if nlist is not None and train_rows < nlist:
        raise IndexChoiceError(f"--index-factory {factory!r} has {nlist} lists but the corpus only {n} rows; "
                               "use fewer lists (IVF{k} with 39·k ≤ rows)")
    return IndexParams(factory, "ivf" if ivf is not None else "other", nlist, m, train_rows, GROUP_ROWS,
                       RERANK, None, f"--index-factory {factory}")


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
