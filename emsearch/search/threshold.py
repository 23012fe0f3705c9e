"""The mining threshold chosen from the corpus itself, with no gold pairs: a two-component fit of the margins.

A fixed threshold fits the corpora it was set on: where near-duplicates and short sentences crowd a true pair's
neighbourhood, its margin falls, and a threshold set on news loses a tenth of the F1 (`benchmarks/mining_threshold.py`).
So the margins of the mined pairs are read as a mixture of two Gaussians, the false pairs and the true ones:

- the false component is anchored by negatives made by construction: each sentence's best margin once its best
  candidate is left out (`null_margins`, from the (k+1)-th neighbour every kNN search already returns). For a
  sentence with a translation that is the margin of its best wrong partner; without one, its runner-up. The fit
  keeps the false component's mean within `NULL_SPAN` null spreads above the null's median and its spread within
  a factor 2 of the null's, so a corpus of nothing but translations shows no false component to speak of,
  rather than one carved out of its own true pairs;
- the true component is free; EM fits both weights.

From the fit, at every candidate threshold t: the true pairs kept, TP(t) = N·w₁·P(true score ≥ t) (capped by the
pairs kept), precision TP(t)/kept(t) and recall TP(t)/(N·w₁). `auto` keeps the F1-best t; `min_precision` the
lowest t whose estimated precision reaches it. Both estimates are reported with whatever threshold is used.

`emsearch mine` fits only on request: on the mining dev set this choice scored 0.2 (de-en) and 1.9 (fr-en) F1
points under the model's fixed thresholds, and a heavy tail of wrong pairs makes it over-estimate precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from emsearch.errors import EmsearchError
from emsearch.search.margin import neighbour_means, score_knn

NULL_SPAN = 1.5  # the false mean may sit this many null spreads above the null's median (the runner-up is lower)
MIN_FIT = 50  # below this many mined pairs there is no distribution to fit
AUTO = "auto"  # the threshold asked of the fit


@dataclass(frozen=True)
class MarginFit:
    """Two Gaussians over the mined margins: index 0 the false pairs, 1 the true ones."""

    weight: tuple[float, float]
    mean: tuple[float, float]
    sd: tuple[float, float]
    pairs: int  # mined pairs fitted


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
                                             "pairs": self.fit.pairs}
        return {"threshold": self.threshold, "how": self.how, "estimated_precision": self.precision,
                "estimated_recall": self.recall, "fit": fit}


def null_margins(D_xy: np.ndarray, I_xy: np.ndarray, D_yx: np.ndarray, I_yx: np.ndarray, margin: str) -> np.ndarray:
    """(nx + ny,) each sentence's best margin among its neighbours 2..k+1: (D, I) hold k+1 neighbours, best first,
    and the margin is the one mined with the first k (so each side's neighbourhood mean is over its first k)."""
    mean_x = neighbour_means(D_xy[:, :-1], I_xy[:, :-1])
    mean_y = neighbour_means(D_yx[:, :-1], I_yx[:, :-1])
    out = []
    for D, I, mean_b in ((D_xy, I_xy, mean_y), (D_yx, I_yx, mean_x)):
        S = score_knn(D[:, 1:], I[:, 1:], neighbour_means(D[:, 1:], I[:, 1:]), mean_b, margin)
        out.append(S.max(1) if S.shape[1] else np.full(len(S), -np.inf, dtype=np.float32))
    null = np.concatenate(out)
    return null[np.isfinite(null)]


def _normal_sf(z: np.ndarray) -> np.ndarray:
    """P(Z ≥ z) of a standard normal, to 1.5e-7 (Abramowitz & Stegun 7.1.26: numpy has no erfc)."""
    x = np.abs(z) / math.sqrt(2)
    t = 1 / (1 + 0.3275911 * x)
    tail = 0.5 * t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    tail *= np.exp(-x * x)
    return np.where(z >= 0, tail, 1 - tail)


def fit_margins(scores: np.ndarray, null: np.ndarray, iters: int = 200) -> MarginFit | None:
    """EM for two Gaussians over `scores`, the false one held near the null (see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < MIN_FIT or len(null) < MIN_FIT:
        return None
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
        mu = (r * s[:, None]).sum(0) / r.sum(0)
        sd = np.sqrt((r * (s[:, None] - mu) ** 2).sum(0) / r.sum(0))
        mu[0] = np.clip(mu[0], m0, m0 + NULL_SPAN * s0)
        sd[0] = np.clip(sd[0], 0.5 * s0, 2 * s0)
        sd[1] = max(sd[1], 1e-3)
        if np.abs(np.concatenate([w, mu, sd]) - before).max() < 1e-7:
            break
    return MarginFit((float(w[0]), float(w[1])), (float(mu[0]), float(mu[1])), (float(sd[0]), float(sd[1])), len(s))


def estimates(fit: MarginFit, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For `scores` sorted descending, threshold at each: estimated (precision, recall) and the scores."""
    t = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    kept = np.arange(1, len(t) + 1)
    positives = fit.pairs * fit.weight[1]
    tp = np.minimum(positives * _normal_sf((t - fit.mean[1]) / fit.sd[1]), kept)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / kept, np.nan_to_num(tp / positives), t


def choose_threshold(scores: np.ndarray, null: np.ndarray, *, threshold: float | str | None = AUTO,
                     min_precision: float | None = None, how: str = "as given") -> ThresholdChoice:
    """The threshold to keep mined pairs at, with the estimates of the fit of `scores` (the margins of all mined
    pairs) against `null` (`null_margins`): a number is applied (`how` says where it came from), None keeps every
    pair (`how` says why), AUTO picks the lowest reaching `min_precision`, else the F1-best."""
    if threshold != AUTO and min_precision is not None:
        raise EmsearchError("give --threshold or --min-precision, not both")
    fit = fit_margins(scores, null)
    if fit is None:
        if threshold != AUTO:
            return ThresholdChoice(threshold, how, None, None, None)
        return ThresholdChoice(None, f"under {MIN_FIT} mined pairs: too few to fit, every pair kept", None, None, None)
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
