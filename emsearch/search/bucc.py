"""BUCC-style bitext mining F1 of an encoder (`emsearch eval bucc`), and the threshold `emsearch mine` can use.

The BUCC 2018 shared task format: `xx-en.xx.tsv` and `xx-en.en.tsv` with lines `id<TAB>sentence`, and
`xx-en.gold.tsv` with lines `src_id<TAB>tgt_id`. Both sides are encoded, mined with exact kNN and a margin
(`emsearch.search.margin`), and scored against the gold pairs at the threshold that maximises F1. Like an index
built over the two files, the vectors are centred on the mean of both sides before mining
(`emsearch.index.shards.centred`), so the threshold fits `emsearch mine`:

    report = bucc(Encoder.load(), "data/bucc", "de-en")
    print(report.best.threshold, report.best.f1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from emsearch.corpus import text_lines
from emsearch.errors import EmsearchError
from emsearch.index.exact import exact_knn
from emsearch.index.shards import centred
from emsearch.search.margin import MARGINS, MODES, MinedPairs, check_choice, mine


@dataclass(frozen=True)
class BuccSet:
    """The two sides of a mining task and its gold pairs (ids as in the files)."""

    pair: str
    src_ids: list[str]
    src_texts: list[str]
    tgt_ids: list[str]
    tgt_texts: list[str]
    gold: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class F1Point:
    """Quality of the mined pairs with score >= threshold."""

    threshold: float
    precision: float
    recall: float
    f1: float
    mined: int  # pairs at or above the threshold


@dataclass(frozen=True)
class BuccReport:
    """Mining quality of one pair: at the best threshold (fields), and at any other (`at`, `prf_at`, `f1_at`)."""

    pair: str
    gold: int  # number of gold pairs
    candidates: int  # pairs mined before any threshold
    best: F1Point  # at the threshold that maximises F1
    margin: str
    mode: str
    k: int
    data: BuccSet = field(repr=False)
    pairs: MinedPairs = field(repr=False)  # every mined pair, best first
    centre: bool = False  # both sides centred on their common mean before mining

    @property
    def best_threshold(self) -> float:
        return self.best.threshold

    @property
    def precision(self) -> float:
        return self.best.precision

    @property
    def recall(self) -> float:
        return self.best.recall

    @property
    def f1(self) -> float:
        return self.best.f1

    def at(self, threshold: float) -> F1Point:
        return point_at(self.data, self.pairs, threshold)

    def prf_at(self, threshold: float) -> tuple[float, float, float]:
        point = self.at(threshold)
        return point.precision, point.recall, point.f1

    def f1_at(self, threshold: float) -> float:
        return self.at(threshold).f1

    def to_json(self, threshold: float | None = None) -> dict:
        """The best-F1 point, and the point at `threshold` when one is given."""
        row = {"pair": self.pair, "gold": self.gold, "candidates": self.candidates, "margin": self.margin,
               "mode": self.mode, "k": self.k, "centre": self.centre, **asdict(self.best)}
        if threshold is not None:
            row["at_threshold"] = asdict(self.at(threshold))
        return row

    def to_table(self, threshold: float | None = None):
        """A rich table of the best-F1 point, and of the point at `threshold` when one is given."""
        from rich.table import Table

        points = [("best F1", self.best)] + ([("at threshold", self.at(threshold))] if threshold is not None else [])
        centring = ", centred" if self.centre else ""
        table = Table(title=f"{self.pair}: {self.gold:,} gold pairs, {self.margin} margin, mode {self.mode}, "
                            f"k={self.k}{centring}")
        for name in ("", "threshold", "precision", "recall", "F1", "pairs"):
            table.add_column(name, justify="right")
        for name, p in points:
            table.add_row(name, f"{p.threshold:.4f}", f"{p.precision:.4f}", f"{p.recall:.4f}", f"{p.f1:.4f}",
                          f"{p.mined:,}")
        return table


def read_id_tsv(path: Path) -> tuple[list[str], list[str]]:
    """Lines `id<TAB>sentence` → (ids, sentences); a line without a tab or a repeated id is an error."""
    ids, texts = [], []
    for lineno, line in text_lines(path):
        if not line:
            continue
        key, tab, text = line.partition("\t")
        if not tab:
            raise EmsearchError(f"{path}:{lineno}: expected id<TAB>sentence")
        ids.append(key)
        texts.append(text)
    if len(set(ids)) != len(ids):
        raise EmsearchError(f"{path}: ids repeat; every line needs its own id")
    return ids, texts


def bucc_file(folder: Path, pair: str, part: str) -> Path:
    """`pair.part.tsv` (this project's dev layout) or the single `pair.*.part` (BUCC 2018's, e.g. de-en.training.de)."""
    tsv = folder / f"{pair}.{part}.tsv"
    if tsv.is_file():
        return tsv
    matches = sorted(folder.glob(f"{pair}.*.{part}"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise EmsearchError(f"{folder}: several {pair} {part} files ({', '.join(m.name for m in matches)}); "
                         f"keep one split per folder")
    raise EmsearchError(f"{folder}: no {tsv.name} (or {pair}.SPLIT.{part}); is this a BUCC-style folder?")


def read_bucc(folder: str | Path, pair: str) -> BuccSet:
    """Read a mining task: `pair` like 'de-en' names the source (de) and target (en) side files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmsearchError(f"{folder}: no such directory")
    src, dash, tgt = pair.partition("-")
    if not dash or not src or not tgt or "-" in tgt:
        raise EmsearchError(f"--pair {pair!r}: give the two sides as SRC-TGT, e.g. de-en")
    src_ids, src_texts = read_id_tsv(bucc_file(folder, pair, src))
    tgt_ids, tgt_texts = read_id_tsv(bucc_file(folder, pair, tgt))
    gold_path = bucc_file(folder, pair, "gold")
    gold = set()
    for lineno, line in text_lines(gold_path):
        if line:
            a, tab, b = line.partition("\t")
            if not tab:
                raise EmsearchError(f"{gold_path}:{lineno}: expected src_id<TAB>tgt_id")
            gold.add((a, b))
    if not gold:
        raise EmsearchError(f"{gold_path}: no gold pairs")
    return BuccSet(pair, src_ids, src_texts, tgt_ids, tgt_texts, frozenset(gold))


def f1_curve(data: BuccSet, pairs: MinedPairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of the top-n pairs for every n (pairs best first)."""
    correct = np.fromiter(((data.src_ids[s], data.tgt_ids[t]) in data.gold
                           for s, t in zip(pairs.src.tolist(), pairs.tgt.tolist())), dtype=bool, count=len(pairs))
    tp = np.cumsum(correct)
    precision = tp / np.arange(1, len(pairs) + 1)
    recall = tp / len(data.gold)
    with np.errstate(invalid="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return precision, recall, f1


def best_f1(data: BuccSet, pairs: MinedPairs) -> F1Point:
    """The threshold (a pair's score; pairs >= it are kept) with the highest F1."""
    if not len(pairs):
        return F1Point(float("inf"), 0.0, 0.0, 0.0, 0)
    precision, recall, f1 = f1_curve(data, pairs)
    # A threshold cannot cut between equal scores: only the last pair of a run of ties is a cut point.
    cut = np.append(pairs.score[1:] < pairs.score[:-1], True)
    n = int(np.argmax(np.where(cut, f1, -1)))
    return F1Point(float(pairs.score[n]), float(precision[n]), float(recall[n]), float(f1[n]), n + 1)


def point_at(data: BuccSet, pairs: MinedPairs, threshold: float) -> F1Point:
    """Quality of the pairs scoring at least `threshold`."""
    n = int((pairs.score >= threshold).sum())
    if n == 0:
        return F1Point(threshold, 0.0, 0.0, 0.0, 0)
    precision, recall, f1 = f1_curve(data, MinedPairs(pairs.src[:n], pairs.tgt[:n], pairs.score[:n]))
    return F1Point(threshold, float(precision[-1]), float(recall[-1]), float(f1[-1]), n)


def bucc(encoder, folder: str | Path, pair: str, *, k: int = 4, margin: str = "ratio", mode: str = "max",
         centre: bool = True, progress: bool = False) -> BuccReport:
    """Mine a BUCC-style task with exact kNN; P/R/F1 at the threshold that maximises F1 (and, later, at any other).

    `encoder` is anything with `.encode(list[str])` returning unit rows (an `Encoder`, or a peer model). With
    `centre`, both sides are centred on their common mean first, as an index holding both compares them.
    """
    if k < 1:
        raise EmsearchError(f"k must be at least 1, got {k}")
    check_choice(margin, MARGINS, "margin")
    check_choice(mode, MODES, "retrieval mode")
    data = read_bucc(folder, pair)
    x, y = (encoder.encode(t, progress=True) if progress else encoder.encode(t)
            for t in (data.src_texts, data.tgt_texts))
    if centre:
        mean = np.concatenate([x, y]).mean(0)
        x, y = centred(x, mean), centred(y, mean)
    return replace(bucc_vectors(data, x, y, k=k, margin=margin, mode=mode), centre=centre)


def bucc_vectors(data: BuccSet, x: np.ndarray, y: np.ndarray, *, k: int = 4, margin: str = "ratio",
                 mode: str = "max") -> BuccReport:
    """Mine a task from given vectors of its two sides (rows in file order), compared as they are."""
    pairs = mine(*exact_knn(x, y, k), *exact_knn(y, x, k), margin=margin, mode=mode)
    return BuccReport(data.pair, len(data.gold), len(pairs), best_f1(data, pairs), margin, mode, k, data, pairs)


def shared_threshold(reports: Sequence[BuccReport]) -> float:
    """One threshold for several pairs: the one that maximises their summed F1, searched over each pair's own
    F1-best threshold."""
    candidates = sorted({r.best_threshold for r in reports})
    return max(candidates, key=lambda t: sum(r.f1_at(t) for r in reports))
