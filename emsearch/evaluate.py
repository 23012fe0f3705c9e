"""Evaluation: cross-lingual retrieval accuracy and BUCC-style bitext mining F1.

Retrieval (`retrieval_accuracy`, `paired_accuracy`, `tatoeba_accuracy`): for every language X, embed its
sentences and the pivot's (English), take each sentence's nearest neighbour on the other side by cosine, and
count how often it is the translation (top-1 accuracy, X→eng and eng→X). xSIM error is 1 − accuracy. The same
function validates training and backs `emsearch eval retrieval`. Input is a multi-way parquet (FLORES-style:
columns id, lang, text) or Tatoeba-style paired text files (`tatoeba.deu-eng.deu` / `tatoeba.deu-eng.eng`, line i
of one translating line i of the other).

Mining (`bucc`): the BUCC 2018 shared task format — `xx-en.xx.tsv` and `xx-en.en.tsv` with lines
`id<TAB>sentence`, and `xx-en.gold.tsv` with lines `src_id<TAB>tgt_id`. Both sides are encoded, mined with exact
kNN and a margin (`emsearch.search.mining`), and scored against the gold pairs at the threshold that maximises F1,
the threshold `emsearch mine` can then use. Like an index built over the two files, the vectors are centred on
the mean of both sides before mining (`emsearch.index.shards.centred`), so the threshold fits `emsearch mine`:

    report = bucc(Encoder.load(), "data/bucc", "de-en")
    print(report.best.threshold, report.best.f1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from emsearch.corpus import text_lines
from emsearch.errors import EmsearchError
from emsearch.index.shards import centred
from emsearch.languages import UnknownLanguageError, normalize_lang
from emsearch.search.mining import MARGINS, MODES, MinedPairs, check_choice, exact_knn, mine


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


def load_multiway(path: str | Path) -> dict[str, dict[int | str, str]]:
    """lang label → {id: text}; an id (int or string) names one sentence and its translations."""
    table = pq.read_table(path)
    missing = [c for c in ("id", "lang", "text") if c not in table.column_names]
    if missing:
        raise EmsearchError(f"{path}: missing column(s) {', '.join(missing)}; a multi-way file needs id, lang, text")
    out: dict[str, dict[int | str, str]] = {}
    for i, lang, text in zip(*(table.column(c).to_pylist() for c in ("id", "lang", "text"))):
        out.setdefault(lang, {})[i] = text
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
        raise EmsearchError(f"{path}: no sentences in the pivot language {pivot!r}")
    pivot_label = pivots[0]
    # A label of the file asked for by name is that label alone (zho_Hant is not zho_Hans); any other spelling
    # asks for every label of its language.
    exact = set() if langs is None else set(langs) & set(data)
    wanted = None if langs is None else {normalize_lang(x) for x in langs if x not in exact}
    labels = [l for l, c in canonical.items() if l != pivot_label and (wanted is None or l in exact or c in wanted)]
    ids = sorted(data[pivot_label])
    xb = encoder.encode([data[pivot_label][i] for i in ids])
    scores = []
    for label in sorted(labels):
        common = [i for i in ids if i in data[label]]
        if not common:
            raise EmsearchError(f"{path}: no id of {label} is also an id of {pivot_label}; in a multi-way file "
                                "a sentence and its translations share one id")
        xq = encoder.encode([data[label][i] for i in common])
        xp = xb[[ids.index(i) for i in common]] if len(common) != len(ids) else xb
        scores.append(LangScore(label, top1_accuracy(xq, xp), top1_accuracy(xp, xq)))
    return RetrievalReport(pivot_label, scores)


def paired_accuracy(encoder, src_path: str | Path, tgt_path: str | Path, label: str | None = None) -> LangScore:
    """Top-1 accuracy both ways between two line-aligned text files (line i of one translates line i of the other)."""
    src, tgt = ([line for _, line in text_lines(p)] for p in (src_path, tgt_path))
    if len(src) != len(tgt):
        raise EmsearchError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: paired files must align")
    if not src:
        raise EmsearchError(f"{src_path} is empty")
    xq, xb = encoder.encode(src), encoder.encode(tgt)
    return LangScore(label or Path(src_path).suffix.lstrip(".") or Path(src_path).name,
                     top1_accuracy(xq, xb), top1_accuracy(xb, xq))


def tatoeba_files(folder: str | Path, pivot: str = "eng") -> list[tuple[str, Path, Path]]:
    """(language, X file, pivot file) for every `NAME.xxx-eng.xxx` file of `folder` that has its `.eng` partner."""
    found = []
    for path in sorted(Path(folder).iterdir()):
        parts = path.name.split(".")
        if len(parts) < 3 or "-" not in parts[-2]:
            continue
        a, _, b = parts[-2].partition("-")
        if parts[-1] == a and b == pivot and path.with_name(".".join(parts[:-1] + [b])).is_file():
            found.append((a, path, path.with_name(".".join(parts[:-1] + [b]))))
    if not found:
        raise EmsearchError(f"{folder}: no Tatoeba-style pairs (NAME.xxx-{pivot}.xxx with NAME.xxx-{pivot}.{pivot})")
    return found


def tatoeba_accuracy(encoder, folder: str | Path, langs: Sequence[str] | None = None,
                     pivot: str = "eng") -> RetrievalReport:
    """`paired_accuracy` for every Tatoeba-style pair of `folder` (or those whose code normalises into `langs`)."""
    wanted = None if langs is None else {normalize_lang(x) for x in langs}
    scores = []
    for lang, src, tgt in tatoeba_files(folder, pivot):
        try:
            code = normalize_lang(lang)
        except UnknownLanguageError:
            code = lang
        if wanted is None or code in wanted:
            scores.append(paired_accuracy(encoder, src, tgt, lang))
    if not scores:
        raise EmsearchError(f"{folder}: none of the languages asked for ({', '.join(langs or [])}) is there")
    return RetrievalReport(pivot, scores)


# --- BUCC-style mining -------------------------------------------------------------------------------------


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
    return bucc_vectors(data, x, y, k=k, margin=margin, mode=mode)


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
