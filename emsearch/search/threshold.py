"""The mining threshold chosen from the corpus itself, with no gold pairs: a two-component fit of the margins.

A fixed threshold fits the corpora it was set on: where near-duplicates and short sentences crowd a true pair's
neighbourhood, its margin falls, and a threshold set on news loses a tenth of the F1 (`benchmarks/mining_threshold.py`).
So the margins of the mined pairs are read as a mixture of two components, the wrong pairs and the right ones:

- the wrong component is anchored by negatives made by construction: each sentence's best margin once its best
  candidate is left out (`null_margins`, from the (k+1)-th neighbour every kNN search already returns), on the
  side with fewer sentences. For a sentence with a translation that is the margin of its best wrong partner;
  without one, its runner-up;
- first it is a Gaussian, its mean kept within `NULL_SPAN` null spreads above the null's median and its spread
  within a factor 2 of the null's, so a corpus of nothing but translations shows no wrong component to speak of,
  rather than one carved out of its own true pairs. The right component is a Gaussian read from its median and
  the spread above it (right pairs are mined only where they beat their best wrong candidate, so their lower
  tail is cut off); EM fits both weights;
- where that fit finds right pairs rare (under `SPARSE_SHARE` of the mined ones), the wrong pairs' upper tail
  decides the threshold, and a Gaussian's is too light: a wrong pair's margin is the best of many wrong
  candidates, and such maxima follow a Gumbel law (on 15 of the study's 16 corpora a Gumbel through the wrong
  pairs' median and 90th percentile puts their 99th within 0.025). So the fit is redone with a Gumbel wrong
  component, its location within `GUMBEL_SPAN` null scales of the null's own Gumbel location and its scale
  within 1–1.5 times the null's; the right pairs kept at t are the pairs kept less the Gumbel's wrong ones.

From the fit, at every candidate threshold t: the right pairs kept TP(t), precision TP(t)/kept(t) and recall
TP(t)/TP(lowest t). `auto` keeps the F1-best t; `min_precision` the lowest t whose estimated precision reaches it.
Both estimates are reported with whatever threshold is used.

`emsearch mine` fits by default (too few mined pairs to fit: the model's threshold). On the study's 22 corpora it
lands within 2 F1 points of the oracle threshold on 20 (4.2 and 4.6 on the others), where the model's fixed
threshold is up to 30 points off; on the mining dev set, whose gold the model's thresholds were set on, it is
0.1–0.9 points under them (`benchmarks/README.md#mining-threshold`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from emsearch.errors import EmsearchError
from emsearch.search.margin import neighbour_means, score_knn

NULL_SPAN = 1.5  # the wrong mean may sit this many null spreads above the null's median (the runner-up is lower)
SPARSE_SHARE = 0.25  # under this share of right pairs the wrong pairs' Gumbel tail is fitted
GUMBEL_SPAN = 1.0  # the wrong pairs' Gumbel location may sit this many null scales above the null's
EULER = 0.5772156649
MIN_FIT = 50  # below this many mined pairs there is no distribution to fit
AUTO = "auto"  # the threshold asked of the fit
MODEL = "model"  # the threshold the model bundle holds for the pair


@dataclass(frozen=True)
class MarginFit:
    """Two components over the mined margins: index 0 the wrong pairs, 1 the right ones (a Gaussian). The wrong one
    is a Gaussian (mean, sd) or, with `wrong="gumbel"`, a Gumbel (location, scale) in the same fields."""

    weight: tuple[float, float]
    mean: tuple[float, float]
    sd: tuple[float, float]
    pairs: int  # mined pairs fitted
    wrong: str = "gaussian"


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float | None  # None: every mined pair kept
    how: str  # why: "from the model bundle", "as given", "from the corpus: F1-best estimate", ...
    precision: float | None  # estimated, at the threshold (None where nothing could be fitted)
    recall: float | None
    fit: MarginFit | None

    def describe(self) -> str:
        """One line: the threshold, why, and what the fit expects of it."""
        line = f"no threshold ({self.how})" if self.threshold is None else f"threshold {self.threshold:g} {self.how}"
        if self.precision is not None:
            line += f", estimated precision {self.precision:.3f} recall {self.recall:.3f}"
        return line

    def as_json(self) -> dict:
        fit = None if self.fit is None else {"weight": self.fit.weight, "mean": self.fit.mean, "sd": self.fit.sd,
                                             "pairs": self.fit.pairs, "wrong": self.fit.wrong}
        return {"threshold": self.threshold, "how": self.how, "estimated_precision": self.precision,
                "estimated_recall": self.recall, "fit": fit}


def null_margins(D_xy: np.ndarray, I_xy: np.ndarray, D_yx: np.ndarray, I_yx: np.ndarray, margin: str) -> np.ndarray:
    """Each sentence's best margin among its neighbours 2..k+1, for the side with fewer sentences (x on a tie):
    (D, I) hold k+1 neighbours, best first, and the margin is the one mined with the first k (so each side's
    neighbourhood mean is over its first k).

    The mined pairs are at most as many as the smaller side's sentences, and the wrong ones are those sentences'
    best wrong partners; the larger side's sentences search a sparser neighbourhood and score lower margins, so
    their nulls would pull the wrong component down (20k German sentences against 200k English: 63 F1 points)."""
    mean_x = neighbour_means(D_xy[:, :-1], I_xy[:, :-1])
    mean_y = neighbour_means(D_yx[:, :-1], I_yx[:, :-1])
    D, I, mean_b = (D_xy, I_xy, mean_y) if len(D_xy) <= len(D_yx) else (D_yx, I_yx, mean_x)
    if D.shape[1] < 2:
        return np.empty(0, dtype=np.float32)
    null = score_knn(D[:, 1:], I[:, 1:], neighbour_means(D[:, 1:], I[:, 1:]), mean_b, margin).max(1)
    return null[np.isfinite(null)]


def _normal_sf(z: np.ndarray) -> np.ndarray:
    """P(Z ≥ z) of a standard normal, to 1.5e-7 (Abramowitz & Stegun 7.1.26: numpy has no erfc)."""
    x = np.abs(z) / math.sqrt(2)
    t = 1 / (1 + 0.3275911 * x)
    tail = 0.5 * t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    tail *= np.exp(-x * x)
    return np.where(z >= 0, tail, 1 - tail)


def fit_margins(scores: np.ndarray, null: np.ndarray) -> MarginFit | None:
    """The two-component fit of `scores` against `null` (see the module docstring); None with too few of either."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < MIN_FIT or len(null) < MIN_FIT:
        return None
    fit = _fit_gaussian_wrong(s, null)
    return fit if fit.weight[1] >= SPARSE_SHARE else _fit_gumbel_wrong(s, null)


def _fit_gaussian_wrong(s: np.ndarray, null: np.ndarray, iters: int = 200) -> MarginFit:
    """EM for two Gaussians over `s`, the wrong one held near the null, the right one read from its upper half."""
    m0 = float(np.median(null))
    s0 = max(m0 - float(np.quantile(null, 0.16)), 1e-4)  # the null's lower half: its upper tail holds near-copies
    w = np.array([0.5, 0.5])
    mu = np.array([m0, float(np.quantile(s, 0.9))])
    sd = np.array([s0, max(float(s.std()), 1e-3)])
    for _ in range(iters):
        before = np.concatenate([w, mu, sd])
        z = (s[:, None] - mu) / sd
        p = w * np.exp(-0.5 * z * z) / sd + 1e-300
        r = p / p.sum(1, keepdims=True)
        w = r.mean(0)
        mu[0] = np.clip((r[:, 0] * s).sum() / r[:, 0].sum(), m0, m0 + NULL_SPAN * s0)
        sd[0] = np.clip(math.sqrt((r[:, 0] * (s - mu[0]) ** 2).sum() / r[:, 0].sum()), 0.5 * s0, 2 * s0)
        mu[1], sd[1] = _upper_half_gaussian(s, r[:, 1])
        if np.abs(np.concatenate([w, mu, sd]) - before).max() < 1e-7:
            break
    return MarginFit((float(w[0]), float(w[1])), (float(mu[0]), float(mu[1])), (float(sd[0]), float(sd[1])), len(s))


def _upper_half_gaussian(s: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """The Gaussian of `s` weighted by `r`, from its median and the spread above it: a right pair is mined only
    when it beats its best wrong candidate, so the right pairs' lower tail is cut off and a full fit widens it."""
    order = np.argsort(s)
    cum = np.cumsum(r[order])
    median = float(s[order][min(np.searchsorted(cum, cum[-1] / 2), len(s) - 1)])
    up = s > median
    spread = math.sqrt((r[up] * (s[up] - median) ** 2).sum() / max(r[up].sum(), 1e-300)) if up.any() else 0.0
    return median, max(spread, 1e-3)


def _gumbel_pdf(s: np.ndarray, loc: float, scale: float) -> np.ndarray:
    z = (s - loc) / scale
    return np.exp(-z - np.exp(-z)) / scale


def _gumbel_sf(s: np.ndarray, loc: float, scale: float) -> np.ndarray:
    return -np.expm1(-np.exp(-(s - loc) / scale))


def _weighted_gumbel(s: np.ndarray, r: np.ndarray, scale: float) -> tuple[float, float]:
    """Maximum-likelihood Gumbel (location, scale) of `s` weighted by `r`, from `scale` by damped fixed-point steps."""
    lo, total = s.min(), r.sum()
    for _ in range(20):
        e = np.exp(-(s - lo) / scale)
        step = (r * s).sum() / total - (r * s * e).sum() / max((r * e).sum(), 1e-300)
        if not np.isfinite(step) or step <= 0:
            break
        scale = 0.5 * (scale + step)
    loc = lo - scale * math.log(max((r * np.exp(-(s - lo) / scale)).sum() / total, 1e-300))
    return loc, scale


def _fit_gumbel_wrong(s: np.ndarray, null: np.ndarray, iters: int = 500) -> MarginFit:
    """EM for a Gumbel (wrong pairs) and a Gaussian (right ones) over `s`, the Gumbel held near the null's own."""
    q50, q90 = np.quantile(null, [0.5, 0.9])
    scale0 = max(float(q90 - q50) / (math.log(1 / math.log(1 / 0.9)) - math.log(1 / math.log(2))), 1e-4)
    loc0 = float(q50) - scale0 * math.log(1 / math.log(2))  # the null's Gumbel, from its median and 90th percentile
    w = np.array([0.5, 0.5])
    loc, scale, mu, sd = loc0, scale0, float(np.quantile(s, 0.9)), max(float(s.std()), 1e-3)
    for _ in range(iters):
        p0 = w[0] * _gumbel_pdf(s, loc, scale)
        p1 = w[1] * np.exp(-0.5 * ((s - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        r = p1 / (p0 + p1 + 1e-300)
        before = (w[0], loc)
        w = np.array([1 - r.mean(), r.mean()])
        loc, scale = _weighted_gumbel(s, 1 - r, scale)
        loc, scale = min(max(loc, loc0), loc0 + GUMBEL_SPAN * scale0), min(max(scale, scale0), 1.5 * scale0)
        mu = float((r * s).sum() / r.sum())
        sd = max(math.sqrt(float((r * (s - mu) ** 2).sum() / r.sum())), 1e-3)
        if abs(w[0] - before[0]) < 1e-8 and abs(loc - before[1]) < 1e-8:
            break
    return MarginFit((float(w[0]), float(w[1])), (loc, mu), (scale, sd), len(s), "gumbel")


def estimates(fit: MarginFit, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For `scores` sorted descending, threshold at each: estimated (precision, recall) and the scores."""
    t = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    kept = np.arange(1, len(t) + 1)
    if fit.wrong == "gumbel":  # the right pairs kept: those kept less the wrong ones expected above t
        wrong = np.minimum(fit.pairs * fit.weight[0] * _gumbel_sf(t, fit.mean[0], fit.sd[0]), kept)
        tp = np.maximum.accumulate(kept - wrong)
        positives = max(float(tp[-1]), 1.0)
    else:
        positives = fit.pairs * fit.weight[1]
        tp = np.minimum(positives * _normal_sf((t - fit.mean[1]) / fit.sd[1]), kept)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / kept, np.nan_to_num(tp / positives), t


def choose_threshold(scores: np.ndarray, null: np.ndarray, *, threshold: float | str | None = AUTO,
                     min_precision: float | None = None, how: str = "as given",
                     fallback: float | None = None) -> ThresholdChoice:
    """The threshold to keep mined pairs at, with the estimates of the fit of `scores` (the margins of all mined
    pairs) against `null` (`null_margins`): a number is applied (`how` says where it came from), None keeps every
    pair (`how` says why), AUTO picks the lowest reaching `min_precision`, else the F1-best; where there are too
    few pairs to fit, AUTO applies `fallback` (the model's threshold), or keeps every pair without one."""
    if threshold != AUTO and min_precision is not None:
        raise EmsearchError("give --threshold or --min-precision, not both")
    fit = fit_margins(scores, null)
    if fit is None:
        if threshold != AUTO:
            return ThresholdChoice(threshold, how, None, None, None)
        too_few = f"under {MIN_FIT} mined pairs: too few to fit"
        if fallback is not None:
            return ThresholdChoice(fallback, f"from the model bundle ({too_few})", None, None, None)
        return ThresholdChoice(None, f"{too_few}, every pair kept", None, None, None)
    precision, recall, t = estimates(fit, scores)
    if threshold != AUTO:
        n = len(t) - 1 if threshold is None else max(int((t >= threshold).sum()) - 1, 0)
        return ThresholdChoice(threshold, how, float(precision[n]), float(recall[n]), fit)
    cut = np.append(t[1:] < t[:-1], True)  # a threshold cannot split tied scores
    if min_precision is not None:
        ok = np.flatnonzero(cut & (precision >= min_precision))
        if not len(ok):
            n = int(np.argmax(np.where(cut, precision, -1)))
            how = f"from the corpus: min-precision {min_precision:g} not reached, the most precise cut"
        else:
            n, how = int(ok[-1]), f"from the corpus: min-precision {min_precision:g}"
    else:
        with np.errstate(invalid="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        n, how = int(np.argmax(np.where(cut, f1, -1))), "from the corpus: F1-best estimate"
    return ThresholdChoice(float(t[n]), how, float(precision[n]), float(recall[n]), fit)
