"""Margin mining on hand-written 3×3 cosine fixtures (one expected answer per mode and margin), and against a
brute-force reference on random vectors; the one-to-one selection against a walk in Python, and its memory."""

from __future__ import annotations

import numpy as np
import pytest

from emsearch.index.exact import exact_knn
import emsearch.search.margin as margin_module
from emsearch.search.margin import MinedPairs, margin_scores, mine, neighbour_means, unique_greedy


def knn_from_matrix(C: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(D, I) of the k largest entries of each row of C, best first."""
    I = np.argsort(-C, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(C, I, 1).astype(np.float32), I.astype(np.int64)


def mine_matrix(C: np.ndarray, k: int = 3, **kw):
    D_xy, I_xy = knn_from_matrix(C, k)
    D_yx, I_yx = knn_from_matrix(C.T, k)
    pairs = mine(D_xy, I_xy, D_yx, I_yx, **kw)
    return [(int(s), int(t), round(float(v), 4)) for s, t, v in zip(pairs.src, pairs.tgt, pairs.score)]


# Rows x0..x2, columns y0..y2. Best target of x: y0, y0, y1; best source of y: x0, x0, x2.
MODES_C = np.array([[0.9, 0.8, 0.1],
                    [0.7, 0.2, 0.3],
                    [0.1, 0.6, 0.5]], dtype=np.float32)


@pytest.mark.parametrize("mode, expected", [
    ("fwd", [(0, 0, 0.9), (1, 0, 0.7), (2, 1, 0.6)]),
    ("bwd", [(0, 0, 0.9), (0, 1, 0.8), (2, 2, 0.5)]),
    ("intersect", [(0, 0, 0.9)]),
    # pooled: (0,0) .9 twice, (0,1) .8, (1,0) .7, (2,1) .6, (2,2) .5 → (0,1), (1,0), (2,2) reuse a taken side
    ("max", [(0, 0, 0.9), (2, 1, 0.6)]),
])
def test_retrieval_modes(mode, expected):
    assert mine_matrix(MODES_C, margin="absolute", mode=mode) == expected


@pytest.mark.parametrize("mode, expected", [
    ("fwd", [(0, 0, 0.9), (1, 0, 0.7)]),
    ("bwd", [(0, 0, 0.9), (0, 1, 0.8)]),
    ("intersect", [(0, 0, 0.9)]),
    ("max", [(0, 0, 0.9)]),
])
def test_threshold_applies_in_every_mode(mode, expected):
    assert mine_matrix(MODES_C, margin="absolute", mode=mode, threshold=0.65) == expected
    # the threshold is inclusive, so the best-F1 threshold of an evaluation reproduces its pairs
    assert mine_matrix(MODES_C, margin="absolute", mode=mode, threshold=0.7)[-1][2] >= 0.7


# Neighbourhood means (k = 3): x 0.6, 0.45, 0.3667; y 0.65, 0.5, 0.2667. y0 is a "hub" close to x0 and x1.
MARGIN_C = np.array([[0.90, 0.80, 0.10],
                     [0.85, 0.30, 0.20],
                     [0.20, 0.40, 0.50]], dtype=np.float32)


@pytest.mark.parametrize("margin, expected", [
    # cos 0.9 / ((0.6 + 0.65) / 2) = 1.44 < 0.8 / ((0.6 + 0.5) / 2) = 1.4545: the ratio margin moves x0 off the hub
    ("ratio", [(2, 2, 1.5789), (1, 0, 1.5455), (0, 1, 1.4545)]),
    # 0.9 − 0.625 = 0.275 > 0.8 − 0.55 = 0.25
    ("distance", [(0, 0, 0.275), (1, 0, 0.3), (2, 2, 0.1833)]),
    ("absolute", [(0, 0, 0.9), (1, 0, 0.85), (2, 2, 0.5)]),
])
def test_margins_forward(margin, expected):
    got = mine_matrix(MARGIN_C, margin=margin, mode="fwd")
    assert sorted(got, key=lambda p: -p[2]) == sorted(expected, key=lambda p: -p[2])


def test_margin_max_mode_takes_the_hub_once():
    # ratio: x1–y0 1.5455 first, then x0 may not reuse y0 and takes y1 (1.4545); x2–y2 1.5789 is best overall
    assert mine_matrix(MARGIN_C, margin="ratio", mode="max") == [(2, 2, 1.5789), (1, 0, 1.5455), (0, 1, 1.4545)]
    # absolute: x0–y0 0.9 wins the hub and x1 gets nothing better than an already-used side
    assert mine_matrix(MARGIN_C, margin="absolute", mode="max") == [(0, 0, 0.9), (2, 2, 0.5)]


def brute_force(x: np.ndarray, y: np.ndarray, k: int, mode: str) -> list[tuple[int, int]]:
    """Reference: full cosine matrix, explicit loops."""
    C = x @ y.T
    mx = np.sort(C, 1)[:, ::-1][:, :k].mean(1)
    my = np.sort(C.T, 1)[:, ::-1][:, :k].mean(1)
    fwd, bwd = [], []
    for i in range(len(x)):
        cand = np.argsort(-C[i])[:k]
        s = [C[i, j] / ((mx[i] + my[j]) / 2) for j in cand]
        fwd.append((s[int(np.argmax(s))], i, int(cand[int(np.argmax(s))])))
    for j in range(len(y)):
        cand = np.argsort(-C[:, j])[:k]
        s = [C[i, j] / ((my[j] + mx[i]) / 2) for i in cand]
        bwd.append((s[int(np.argmax(s))], int(cand[int(np.argmax(s))]), j))
    if mode == "fwd":
        return sorted((i, j) for _, i, j in fwd)
    used_x, used_y, out = set(), set(), []
    for _, i, j in sorted(fwd + bwd, key=lambda t: -t[0]):
        if i not in used_x and j not in used_y:
            used_x.add(i), used_y.add(j), out.append((i, j))
    return sorted(out)


@pytest.mark.parametrize("mode", ["fwd", "max"])
def test_matches_brute_force(mode):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 16)).astype(np.float32)
    y = rng.standard_normal((45, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    D_xy, I_xy = exact_knn(x, y, 4)
    D_yx, I_yx = exact_knn(y, x, 4)
    pairs = mine(D_xy, I_xy, D_yx, I_yx, margin="ratio", mode=mode)
    assert sorted(zip(pairs.src.tolist(), pairs.tgt.tolist())) == brute_force(x, y, 4, mode)
    assert np.all(np.diff(pairs.score) <= 0)


def test_fewer_targets_than_k():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    y = x[:2] + 0.01 * rng.standard_normal((2, 8)).astype(np.float32)
    D_xy, I_xy = exact_knn(x, y, 4)
    assert (I_xy[:, 2:] == -1).all()
    assert np.allclose(neighbour_means(D_xy, I_xy), D_xy[:, :2].mean(1), atol=1e-6)
    D_yx, I_yx = exact_knn(y, x, 4)
    pairs = mine(D_xy, I_xy, D_yx, I_yx, mode="max")
    assert sorted(zip(pairs.src.tolist(), pairs.tgt.tolist())) == [(0, 0), (1, 1)]


def test_empty_sides():
    D, I = np.zeros((0, 4), np.float32), np.zeros((0, 4), np.int64)
    D_yx, I_yx = np.full((3, 4), -1.0, np.float32), np.full((3, 4), -1, np.int64)
    for mode in ("fwd", "bwd", "intersect", "max"):
        assert len(mine(D, I, D_yx, I_yx, mode=mode)) == 0


def test_bad_choices_are_value_errors():
    D, I = knn_from_matrix(MODES_C, 3)
    with pytest.raises(ValueError, match="retrieval mode"):
        mine(D, I, D, I, mode="both")
    with pytest.raises(ValueError, match="margin"):
        margin_scores(D, D[:, 0], D[:, 0], "cosine")
    with pytest.raises(ValueError, match="matching"):
        mine(D, I[:, :2], D, I)


def walk(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Reference one-to-one selection: the walk, pair by pair."""
    used_src, used_tgt, keep = set(), set(), np.zeros(len(src), dtype=bool)
    for i, (s, t) in enumerate(zip(src.tolist(), tgt.tolist())):
        if s not in used_src and t not in used_tgt:
            used_src.add(s), used_tgt.add(t)
            keep[i] = True
    return keep


@pytest.mark.parametrize("rounds_until", [0.0, margin_module.ROUNDS_UNTIL, 2.0])  # rounds only, default, walk only
def test_one_to_one_selection_is_the_walk(rounds_until, monkeypatch):
    monkeypatch.setattr(margin_module, "ROUNDS_UNTIL", rounds_until)
    monkeypatch.setattr(margin_module, "WALK_SLICE", 7)
    rng = np.random.default_rng(3)
    cases = [(rng.integers(0, int(rng.integers(1, 40)), n), rng.integers(0, int(rng.integers(1, 40)), n))
             for n in rng.integers(0, 300, 200)]
    chain = np.arange(400)  # (0,0) (1,0) (1,1) (2,1) ...: every pair conflicts with the next, a round apiece
    cases.append((chain // 2 + chain % 2, chain // 2))
    for src, tgt in cases:
        pairs = MinedPairs(src.astype(np.int64), tgt.astype(np.int64), np.zeros(len(src), dtype=np.float32))
        got = unique_greedy(pairs)
        keep = walk(src, tgt)
        np.testing.assert_array_equal(got.src, src[keep])
        np.testing.assert_array_equal(got.tgt, tgt[keep])


def test_one_to_one_selection_holds_no_python_object_per_pair():
    """2N pooled pairs of N sentences a side (most sides twice, as in mode max): the selection's memory stays a
    few arrays, well under the sets and lists of a walk in Python (~130 bytes a pair)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 200_000
    sigma = rng.permutation(n)
    fwd = np.where(rng.random(n) < 0.9, sigma, rng.integers(0, n, n))
    bwd = np.where(rng.random(n) < 0.9, np.argsort(sigma), rng.integers(0, n, n))
    order = rng.permutation(2 * n)
    pairs = MinedPairs(np.concatenate([np.arange(n), bwd])[order], np.concatenate([fwd, np.arange(n)])[order],
                       np.zeros(2 * n, dtype=np.float32))
    tracemalloc.start()
    try:
        got = unique_greedy(pairs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got) >= 0.85 * n
    assert peak / (2 * n) < 80, f"{peak / (2 * n):.0f} bytes per pair"
