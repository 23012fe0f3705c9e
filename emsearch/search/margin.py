"""Margin-based bitext mining (Artetxe & Schwenk, 2019) as plain array code on kNN results `(D, I)`.

Inputs are the k nearest neighbours in both directions, best first:
    D_xy, I_xy  (nx, k)  cosine and row (into y) of each x's k nearest y; I = -1 where there are fewer than k
    D_yx, I_yx  (ny, k)  the same from y to x
A candidate pair (x, y) with cosine c is scored against the neighbourhoods of both sides,
    m = (mean cosine of x's k neighbours + mean cosine of y's k neighbours) / 2
    ratio = c / m     distance = c - m     absolute = c
so that a sentence close to everything ("hub") does not win every pair. The candidates of x are its own k
neighbours (as in LASER's `mine_bitexts.py`). Retrieval modes:
    fwd        each x with its best-scoring candidate y
    bwd        each y with its best-scoring candidate x
    intersect  pairs that are best in both directions
    max        both directions pooled, sorted by score, a pair kept only if neither side is used yet (default)
A threshold keeps pairs with score >= threshold, in every mode.

    D_xy, I_xy = exact_knn(x, y, 4)
    D_yx, I_yx = exact_knn(y, x, 4)
    pairs = mine(D_xy, I_xy, D_yx, I_yx, margin="ratio", mode="max", threshold=1.05)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emsearch.errors import EmsearchError

MARGINS = ("ratio", "distance", "absolute")
MODES = ("max", "fwd", "bwd", "intersect")


@dataclass(frozen=True)
class MinedPairs:
    """Mined pairs, best first: src[i] (row of x) ↔ tgt[i] (row of y) with margin score score[i]."""

    src: np.ndarray  # (n,) int64
    tgt: np.ndarray  # (n,) int64
    score: np.ndarray  # (n,) float32, descending

    def __len__(self) -> int:
        return len(self.score)

    def prefix(self, n: int) -> MinedPairs:
        """The n best pairs."""
        return MinedPairs(self.src[:n], self.tgt[:n], self.score[:n])


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise EmsearchError(f"unknown {what} {value!r}: choose one of {', '.join(allowed)}")
    return value


def neighbour_means(D: np.ndarray, I: np.ndarray) -> np.ndarray:
    """(n,) mean cosine of each row's valid neighbours (I >= 0); nan for a row with none."""
    valid = I >= 0
    count = valid.sum(1)
    total = np.where(valid, D, 0).sum(1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


def margin_scores(cos: np.ndarray, mean_a: np.ndarray, mean_b: np.ndarray, margin: str) -> np.ndarray:
    """Margin of cosine `cos` between two sentences whose neighbourhood means are `mean_a`, `mean_b` (broadcast)."""
    check_choice(margin, MARGINS, "margin")
    if margin == "absolute":
        return cos.astype(np.float32)
    m = (mean_a + mean_b) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cos / m if margin == "ratio" else cos - m).astype(np.float32)


def score_knn(D: np.ndarray, I: np.ndarray, mean_q: np.ndarray, mean_b: np.ndarray, margin: str) -> np.ndarray:
    """(n, k) margin score of every candidate I[i, j] of query i; -inf where there is no candidate."""
    valid = I >= 0
    mean_b = np.append(mean_b, np.float32(np.nan))  # row -1 (no candidate) reads this nan
    S = margin_scores(np.where(valid, D, 0), mean_q[:, None], mean_b[np.where(valid, I, -1)], margin)
    return np.where(valid & np.isfinite(S), S, -np.inf).astype(np.float32)


def best_candidates(S: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: the best-scoring candidate (-1 if none) and its score."""
    if S.shape[1] == 0:
        return np.full(len(S), -1, dtype=np.int64), np.full(len(S), -np.inf, dtype=np.float32)
    j = S.argmax(1)
    rows = np.arange(len(S))
    score = S[rows, j]
    return np.where(np.isfinite(score), I[rows, j], -1).astype(np.int64), score


def sort_pairs(src: np.ndarray, tgt: np.ndarray, score: np.ndarray, threshold: float | None) -> MinedPairs:
    """Drop missing candidates and pairs under the threshold; order by score, ties by (src, tgt)."""
    keep = (src >= 0) & (tgt >= 0) & np.isfinite(score)
    if threshold is not None:
        keep &= score >= threshold
    src, tgt, score = src[keep], tgt[keep], score[keep]
    order = np.lexsort((tgt, src, -score.astype(np.float64)))
    return MinedPairs(src[order].astype(np.int64), tgt[order].astype(np.int64), score[order].astype(np.float32))


ROUNDS_UNTIL = 0.01  # rounds go on while each keeps at least this share of the pairs left; then the walk
WALK_SLICE = 1 << 20  # pairs walked in Python at a time


def unique_greedy(pairs: MinedPairs) -> MinedPairs:
    """Walk pairs best first, keeping a pair only if neither its source nor its target is already used.

    Done in rounds of array operations rather than a Python step per pair: a pair that comes first, among the
    pairs left, both for its source and for its target is one the walk keeps (every earlier pair left shares
    neither side, and every earlier pair dropped shares one with an earlier kept pair), so each round keeps all
    such pairs and drops those that share a side with them. Long chains of conflicts would need many rounds:
    once a round keeps under ROUNDS_UNTIL of what is left, the rest is walked in Python, a slice at a time.
    Memory: a few arrays of len(pairs) and one flag per source and target row (no Python object per pair).
    """
    n = len(pairs)
    if n == 0:
        return pairs
    src, tgt = pairs.src, pairs.tgt
    keep = np.zeros(n, dtype=bool)
    used_src = np.zeros(int(src.max()) + 1, dtype=bool)
    used_tgt = np.zeros(int(tgt.max()) + 1, dtype=bool)
    first_src = np.empty(len(used_src), dtype=np.int64)
    first_tgt = np.empty(len(used_tgt), dtype=np.int64)
    left = np.arange(n, dtype=np.int64)  # positions of the pairs left, best first
    while len(left):
        s, t = src[left], tgt[left]
        won = left[_first_of_value(s, first_src) & _first_of_value(t, first_tgt)]
        keep[won] = True
        used_src[src[won]] = True
        used_tgt[tgt[won]] = True
        before = len(left)
        left = left[~(used_src[s] | used_tgt[t])]
        if len(won) < ROUNDS_UNTIL * before:
            break
    for lo in range(0, len(left), WALK_SLICE):
        part = left[lo : lo + WALK_SLICE]
        for i, a, b in zip(part.tolist(), src[part].tolist(), tgt[part].tolist()):
            if not (used_src[a] or used_tgt[b]):
                used_src[a] = used_tgt[b] = True
                keep[i] = True
    return MinedPairs(src[keep], tgt[keep], pairs.score[keep])


def _first_of_value(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Whether each position of `values` is the first holding its value; `first` is scratch of size max + 1."""
    positions = np.arange(len(values), dtype=np.int64)
    first[values] = len(values)
    np.minimum.at(first, values, positions)
    return first[values] == positions


def mine(D_xy: np.ndarray, I_xy: np.ndarray, D_yx: np.ndarray, I_yx: np.ndarray, *, margin: str = "ratio",
         mode: str = "max", threshold: float | None = None) -> MinedPairs:
    """Mine pairs (row of x, row of y) from kNN results in both directions; see the module docstring."""
    check_choice(margin, MARGINS, "margin")
    check_choice(mode, MODES, "retrieval mode")
    for name, D, I in (("xy", D_xy, I_xy), ("yx", D_yx, I_yx)):
        if D.shape != I.shape or D.ndim != 2:
            raise ValueError(f"D_{name} {D.shape} and I_{name} {I.shape} must be matching (n, k) arrays")
    mean_x = neighbour_means(D_xy, I_xy)  # (nx,)
    mean_y = neighbour_means(D_yx, I_yx)  # (ny,)
    fwd_tgt, fwd_score = best_candidates(score_knn(D_xy, I_xy, mean_x, mean_y, margin), I_xy)
    bwd_src, bwd_score = best_candidates(score_knn(D_yx, I_yx, mean_y, mean_x, margin), I_yx)
    x_rows = np.arange(len(D_xy), dtype=np.int64)
    y_rows = np.arange(len(D_yx), dtype=np.int64)
    if mode == "fwd":
        return sort_pairs(x_rows, fwd_tgt, fwd_score, threshold)
    if mode == "bwd":
        return sort_pairs(bwd_src, y_rows, bwd_score, threshold)
    if mode == "intersect":
        mutual = fwd_tgt >= 0
        mutual[mutual] = bwd_src[fwd_tgt[mutual]] == x_rows[mutual]
        return sort_pairs(np.where(mutual, x_rows, -1), fwd_tgt, fwd_score, threshold)
    # max: thresholding first is equivalent (pairs under it come last in the walk) and shortens the walk.
    pooled = sort_pairs(np.concatenate([x_rows, bwd_src]), np.concatenate([fwd_tgt, y_rows]),
                        np.concatenate([fwd_score, bwd_score]), threshold)
    return unique_greedy(pooled)
