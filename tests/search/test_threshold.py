"""The threshold chosen from the margins alone, on mixtures whose true pairs are known."""

from __future__ import annotations

import numpy as np
import pytest

from emsearch.errors import EmsearchError
from emsearch.index.exact import exact_knn
from emsearch.search.margin import mine
from emsearch.search.threshold import choose_threshold, null_margins


def mixture(n_false: int, n_true: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Margins shaped like the study's: false pairs near 1.02, true near 1.3; the null a little under the false."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(1.02, 0.06, n_false), rng.normal(1.3, 0.12, n_true)])
    truth = np.arange(len(scores)) >= n_false
    order = np.argsort(-scores)
    return scores[order], truth[order], rng.normal(0.99, 0.06, 2 * (n_false + n_true))


def f1_at(scores: np.ndarray, truth: np.ndarray, t: float) -> tuple[float, float, float]:
    kept = scores >= t
    p, r = truth[kept].mean(), truth[kept].sum() / truth.sum()
    return p, r, 2 * p * r / (p + r)


# at a 5% share the true pairs' lower tail is buried under the false ones: their spread, so the recall, is
# under-estimated, and the threshold lands a little high
@pytest.mark.parametrize("n_false, n_true, f1_lost, off", [(4000, 1000, 0.02, 0.03), (1000, 4000, 0.02, 0.03),
                                                            (9500, 500, 0.03, 0.1)])
def test_the_f1_best_estimate_is_near_the_oracle(n_false, n_true, f1_lost, off):
    scores, truth, null = mixture(n_false, n_true)
    choice = choose_threshold(scores, null)
    oracle = max(f1_at(scores, truth, t)[2] for t in scores[::10])
    p, r, f1 = f1_at(scores, truth, choice.threshold)
    assert f1 > oracle - f1_lost
    assert abs(choice.precision - p) < off and abs(choice.recall - r) < off


def test_a_corpus_of_only_translations_keeps_nearly_all():
    scores, truth, null = mixture(0, 3000)
    choice = choose_threshold(scores, null)
    assert (scores >= choice.threshold).mean() > 0.97


def test_min_precision_is_met_and_the_threshold_given_is_kept():
    scores, truth, null = mixture(4000, 1000)
    default = choose_threshold(scores, null)
    strict = choose_threshold(scores, null, min_precision=0.99)
    assert strict.threshold > default.threshold and strict.precision >= 0.99
    assert f1_at(scores, truth, strict.threshold)[0] > 0.97
    given = choose_threshold(scores, null, threshold=1.1)
    assert given.threshold == 1.1 and given.how == "as given" and 0 < given.precision < default.precision
    with pytest.raises(EmsearchError, match="not both"):
        choose_threshold(scores, null, threshold=1.1, min_precision=0.9)


def test_too_few_pairs_keep_everything():
    choice = choose_threshold(np.array([1.2, 1.1]), np.array([1.0, 0.9]))
    assert choice.threshold is None and "too few" in choice.describe()


def test_null_margins_leave_the_best_candidate_out():
    """x0 ↔ y0 are translations; with y0 left out, x0's best margin is its runner-up's."""
    rng = np.random.default_rng(1)
    y = rng.standard_normal((30, 32)).astype(np.float32)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = y[:10] + 0.05 * rng.standard_normal((10, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    (D_xy, I_xy), (D_yx, I_yx) = exact_knn(x, y, 5), exact_knn(y, x, 5)
    null = null_margins(D_xy, I_xy, D_yx, I_yx, "ratio")
    mined = mine(D_xy[:, :4], I_xy[:, :4], D_yx[:, :4], I_yx[:, :4], mode="fwd")
    assert null.shape == (40,) and np.array_equal(mined.src, mined.tgt)  # every x found its translation
    assert (null[mined.src] < mined.score).all()
