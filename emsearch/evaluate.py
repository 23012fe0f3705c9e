"""Retrieval evaluation on a multi-way parallel file (FLORES-style: columns id, lang, text).

For every language X: embed its sentences and the pivot's (English), take each sentence's nearest neighbour
on the other side by cosine, and count how often it is the translation (top-1 accuracy, X→eng and eng→X).
xSIM error is 1 − accuracy. The same function validates training and backs `emsearch eval retrieval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from emsearch.languages import UnknownLanguageError, normalize_lang


@dataclass(frozen=True)
class LangScore:
    lang: str  # the file's own label, e.g. deu_Latn
    to_pivot: float  # accuracy X → pivot
    from_pivot: float  # accuracy pivot → X

    @property
    def mean(self) -> float:
        return (self.to_pivot + self.from_pivot) / 2


@dataclass(frozen=True)
class RetrievalReport:
    pivot: str
    scores: list[LangScore] = field(default_factory=list)

    @property
    def average(self) -> float:
        return float(np.mean([s.mean for s in self.scores])) if self.scores else float("nan")


def load_multiway(path: str | Path) -> dict[str, dict[int, str]]:
    """lang label → {id: text}."""
    table = pq.read_table(path)
    missing = [c for c in ("id", "lang", "text") if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a multi-way file needs id, lang, text")
    out: dict[str, dict[int, str]] = {}
    for i, lang, text in zip(*(table.column(c).to_pylist() for c in ("id", "lang", "text"))):
        out.setdefault(lang, {})[int(i)] = text
    return out


def top1_accuracy(xq: np.ndarray, xb: np.ndarray) -> float:
    """Rows i of xq and xb are translations; fraction of xq rows whose nearest xb row is their own."""
    nearest = (xq @ xb.T).argmax(1)
    return float((nearest == np.arange(len(xq))).mean())


def retrieval_accuracy(encoder, path: str | Path, langs: Sequence[str] | None = None,
                       pivot: str = "eng") -> RetrievalReport:
    """Accuracy of every language of the file (or those whose code normalises into `langs`) against the pivot."""
    data = load_multiway(path)
    canonical = {}
    for label in data:
        try:
            canonical[label] = normalize_lang(label)
        except UnknownLanguageError:
            continue
    pivots = [label for label, code in canonical.items() if code == normalize_lang(pivot)]
    if not pivots:
        raise ValueError(f"{path}: no sentences in the pivot language {pivot!r}")
    pivot_label = pivots[0]
    wanted = None if langs is None else {normalize_lang(x) for x in langs}
    labels = [l for l, c in canonical.items() if l != pivot_label and (wanted is None or c in wanted or l in langs)]
    ids = sorted(data[pivot_label])
    xb = encoder.encode([data[pivot_label][i] for i in ids])
    scores = []
    for label in sorted(labels):
        common = [i for i in ids if i in data[label]]
        xq = encoder.encode([data[label][i] for i in common])
        xp = xb[[ids.index(i) for i in common]] if len(common) != len(ids) else xb
        scores.append(LangScore(label, top1_accuracy(xq, xp), top1_accuracy(xp, xq)))
    return RetrievalReport(pivot_label, scores)
