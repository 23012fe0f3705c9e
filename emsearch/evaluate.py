"""Cross-lingual retrieval accuracy: the figure training validates on and `emsearch eval retrieval` reports.

For every language X, embed its sentences and the pivot's (English), take each sentence's nearest neighbour on the
other side by cosine, and count how often it is the translation (top-1 accuracy, X→eng and eng→X). xSIM error is
1 − accuracy. Input is a multi-way parquet (FLORES-style: columns id, lang, text), a folder of Tatoeba-style
paired text files (`tatoeba.deu-eng.deu` / `tatoeba.deu-eng.eng`, line i of one translating line i of the
other), or two such files. Plain numpy: BUCC-style mining F1, which needs the index and the margin, is
`emsearch.search.bucc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from emsearch.corpus import text_lines
from emsearch.errors import EmsearchError
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

    def to_json(self) -> dict:
        return {"pivot": self.pivot, "average": self.average, "xsim_error": 1 - self.average,
                "langs": {s.lang: {"to_pivot": s.to_pivot, "from_pivot": s.from_pivot} for s in self.scores}}

    def to_table(self):
        """A rich table: accuracy both ways per language, the mean and xSIM error, and the average."""
        from rich.table import Table

        table = Table(title=f"top-1 retrieval accuracy against {self.pivot}")
        for name in ("language", f"→ {self.pivot}", f"{self.pivot} →", "mean", "xSIM error %"):
            table.add_column(name, justify="left" if name == "language" else "right")
        for s in self.scores:
            table.add_row(s.lang, f"{s.to_pivot:.4f}", f"{s.from_pivot:.4f}", f"{s.mean:.4f}",
                          f"{100 * (1 - s.mean):.2f}")
        table.add_section()
        table.add_row("average", "", "", f"{self.average:.4f}", f"{100 * (1 - self.average):.2f}")
        return table


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


def evaluate_retrieval(path: str | Path, pivot_file: str | Path | None = None, *, langs: Sequence[str] | None = None,
                       pivot: str = "eng", encoder=None, model: str | Path | None = None) -> RetrievalReport:
    """Retrieval accuracy of whatever `path` is: a multi-way parquet, a folder of Tatoeba-style pairs, or a text
    file whose line-aligned pivot file is `pivot_file`. `encoder` is anything with `.encode`; without one, the
    bundle at `model` (default: the shipped model), loaded once the input is known to be usable."""
    path = Path(path)
    if not path.exists():
        raise EmsearchError(f"{path}: no such file or directory")
    if pivot_file is not None and (path.is_dir() or path.suffix == ".parquet"):
        raise EmsearchError("a second file is only for two paired text files; drop it for a parquet file or folder")
    if encoder is None:
        from emsearch.encoder import Encoder  # torch loads only when a model does

        encoder = Encoder.load(model)
    if path.is_dir():
        return tatoeba_accuracy(encoder, path, langs, pivot)
    if path.suffix == ".parquet":
        return retrieval_accuracy(encoder, path, langs, pivot)
    if pivot_file is None:
        raise EmsearchError(f"{path} is a text file: give its line-aligned pivot file as the second argument")
    return RetrievalReport(pivot, [paired_accuracy(encoder, path, pivot_file)])
