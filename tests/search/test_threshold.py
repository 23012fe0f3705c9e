"""The threshold chosen from the margins alone, on mixtures whose true pairs are known."""

from __future__ import annotations

import numpy as np
import pytest

from emsearch.errors import EmsearchError
from emsearch.index.exact import exact_knn
from emsearch.search.margin import mine
from emsearch.search.threshold import choose_threshold, null_margins


def mixture(n_false: int, n_true: int, seed: int = 0, wrong: str = "gumbel") -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray]:
    """Margins shaped like the study's corpora: right pairs a Gaussian near 1.3; wrong pairs around 1.03, their upper
    tail a Gumbel's where right pairs are rare (each the best of many wrong candidates) and near a Gaussian's where
    they are common; the null (runner-ups, and best wrong partners) a little lower."""
    rng = np.random.default_rng(seed)
    false = rng.gumbel(1.0, 0.06, n_false) if wrong == "gumbel" else rng.normal(1.02, 0.06, n_false)
    scores = np.concatenate([false, rng.normal(1.3, 0.12, n_true)])
    truth = np.arange(len(scores)) >= n_false
    order = np.argsort(-scores)
    null = rng.gumbel(0.96, 0.045, 2 * len(scores)) if wrong == "gumbel" else rng.normal(0.99, 0.06, 2 * len(scores))
    return scores[order], truth[order], null


def f1_at(scores: np.ndarray, truth: np.ndarray, t: float) -> tuple[float, float, float]:
    kept = scores >= t
    p, r = truth[kept].mean(), truth[kept].sum() / truth.sum()
    return p, r, 2 * p * r / (p + r)


# With few right pairs the threshold sits in the wrong pairs' Gumbel tail: a Gaussian read there estimates
# precision 0.86 where it is 0.30 and loses a third of the F1; the Gumbel fitted in its place is near the oracle.
# (Gumbel-tailed wrong pairs at a 10-20% share read as Gaussian lose 6-12 points here; the study's corpora of that
# share lose at most 1.1, their wrong pairs' tails being lighter.)
@pytest.mark.parametrize("n_false, n_true, wrong, f1_lost, off", [(9500, 500, "gumbel", 0.01, 0.1),
                                                                   (2500, 2500, "gaussian", 0.01, 0.03),
                                                                   (1000, 4000, "gaussian", 0.005, 0.03)])
def test_the_f1_best_estimate_is_near_the_oracle(n_false, n_true, wrong, f1_lost, off):
    scores, truth, null = mixture(n_false, n_true, wrong=wrong)
    choice = choose_threshold(scores, null)
    oracle = max(f1_at(scores, truth, t)[2] for t in scores[::5])
    p, r, f1 = f1_at(scores, truth, choice.threshold)
    assert choice.fit.wrong == wrong
    assert f1 > oracle - f1_lost
    assert abs(choice.precision - p) < off and abs(choice.recall - r) < off


def test_a_corpus_of_only_translations_keeps_nearly_all():
    scores, truth, null = mixture(0, 3000)
    choice = choose_threshold(scores, null)
    assert (scores >= choice.threshold).mean() > 0.97


def test_min_precision_is_met_and_the_threshold_given_is_kept():
    scores, truth, null = mixture(9500, 500)
    default = choose_threshold(scores, null)
    strict = choose_threshold(scores, null, min_precision=0.9)
    assert strict.threshold > default.threshold and strict.precision >= 0.9
    precision = f1_at(scores, truth, strict.threshold)[0]
    assert precision > f1_at(scores, truth, default.threshold)[0] + 0.1 and abs(precision - strict.precision) < 0.1
    given = choose_threshold(scores, null, threshold=1.1)
    assert given.threshold == 1.1 and given.how == "as given" and 0 < given.precision < default.precision
    with pytest.raises(EmsearchError, match="not both"):
        choose_threshold(scores, null, threshold=1.1, min_precision=0.9)


def test_too_few_pairs_keep_everything_or_take_the_fallback():
    choice = choose_threshold(np.array([1.2, 1.1]), np.array([1.0, 0.9]))
    assert choice.threshold is None and "too few" in choice.describe()
    choice = choose_threshold(np.array([1.2, 1.1]), np.array([1.0, 0.9]), fallback=1.15)
    assert choice.threshold == 1.15 and "model bundle" in choice.how and "too few" in choice.how


def test_null_margins_leave_the_best_candidate_out_on_the_smaller_side():
    """x_i ↔ y_i are translations; with y_i left out, x_i's best margin is its runner-up's. The 30 y sentences
    search the 10 x ones, a sparser neighbourhood: their nulls are not taken."""
    rng = np.random.default_rng(1)
    y = rng.standard_normal((30, 32)).astype(np.float32)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = y[:10] + 0.05 * rng.standard_normal((10, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    (D_xy, I_xy), (D_yx, I_yx) = exact_knn(x, y, 5), exact_knn(y, x, 5)
    null = null_margins(D_xy, I_xy, D_yx, I_yx, "ratio")
    mined = mine(D_xy[:, :4], I_xy[:, :4], D_yx[:, :4], I_yx[:, :4], mode="fwd")
    assert null.shape == (10,) and np.array_equal(mined.src, mined.tgt)  # every x found its translation
    assert (null[mined.src] < mined.score).all()
