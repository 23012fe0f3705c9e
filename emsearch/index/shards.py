"""Embedding shards: fp16 `.npy`, one per row range, written atomically and recorded in the manifest.

An index directory holds `manifest.json` and `embeddings/00000.npy`, `embeddings/00001.npy`, ...: shard i holds
the unit vectors of global rows [start, stop) in float16. Every file is written under a temporary name and renamed
into place, and the manifest records each shard's row range and SHA-256, so a shard named in the manifest is
whole, and a rerun after a crash can tell a finished shard from a missing or damaged one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emsearch.errors import EmsearchError
from emsearch.atomic import file_matches, file_sha256, save_npy

EMBEDDINGS_DIR = "embeddings"


@dataclass(frozen=True)
class Shard:
    """One embedding file: global rows [start, stop), its checksum, and how many of its texts were truncated."""

    index: int
    start: int
    stop: int
    file: str  # relative to the index directory
    sha256: str
    truncated: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Shard:
        return cls(**d)


def shard_path(root: Path, index: int) -> Path:
    return root / EMBEDDINGS_DIR / f"{index:05d}.npy"


def save_fp16(path: Path, vectors: np.ndarray) -> None:
    """`vectors` as a float16 .npy at `path`, whole or absent (the folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npy(path, np.ascontiguousarray(vectors, dtype=np.float16))


def write_shard(root: Path, index: int, start: int, vectors: np.ndarray, truncated: int = 0) -> Shard:
    """Save `vectors` (rows, dim) as float16 shard `index` covering rows [start, start + rows)."""
    path = shard_path(root, index)
    save_fp16(path, vectors)
    return Shard(index, start, start + len(vectors), str(path.relative_to(root)), file_sha256(path), truncated)


def shard_is_valid(root: Path, shard: Shard) -> bool:
    """True when the shard file exists and its checksum is the recorded one."""
    return file_matches(root / shard.file, shard.sha256)


def load_shard(root: Path, shard: Shard, dim: int) -> np.ndarray:
    """The shard as a read-only float16 memory map of shape (rows, dim)."""
    path = root / shard.file
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise EmsearchError(f"{path}: unreadable embedding shard ({e}); rerun emsearch build-index to repair "
                         "it") from None
    if x.dtype != np.float16 or x.shape != (shard.rows, dim):
        raise EmsearchError(f"{path}: holds {x.dtype}{x.shape}, expected float16{(shard.rows, dim)}; "
                         "rerun emsearch build-index to repair it")
    return x


class ShardedEmbeddings:
    """All shards of an index as one virtual (ntotal, dim) float16 matrix.

    With `mmap` (queries) each shard stays memory-mapped. Without (the build, which passes over every row), each
    access maps the shard anew and unmaps it after: pages touched through a mapping count as resident for as
    long as it lives, so this keeps the build's resident memory bounded by one shard, not the corpus.

    With a `centre` (the corpus mean, recorded by the build), `take` and `iter_blocks` give the rows as the index
    compares them, `centred`: the mean subtracted, then unit length again. With `by_lang` as well (an index centred
    per language), each row is centred on its own language's mean instead.
    """

    def __init__(self, root: Path, shards: Sequence[Shard], dim: int, mmap: bool = True,
                 centre: Sequence[float] | None = None, by_lang: LanguageCentres | None = None):
        self.root = root
        self.shards = sorted(shards, key=lambda s: s.start)
        self.dim = dim
        self.mmap = mmap
        self.centre = None if centre is None else np.asarray(centre, dtype=np.float32)
        if self.centre is not None and self.centre.shape != (dim,):
            raise EmsearchError(f"{root}: the recorded centre has {self.centre.size} values for vectors of dimension "
                                f"{dim} (a damaged manifest); rerun emsearch build-index with the same input")
        if by_lang is not None and (self.centre is None or by_lang.means.shape[1] != dim):
            raise EmsearchError(f"{root}: the recorded language means do not fit the corpus mean and vectors of "
                                f"dimension {dim} (a damaged manifest); rerun emsearch build-index with the same input")
        self.by_lang = by_lang
        self.parts = [load_shard(root, s, dim) for s in self.shards]  # validated here; untouched maps cost nothing
        if not mmap:
            self.parts = []
        self.starts = np.array([s.start for s in self.shards], dtype=np.int64)
        self.ntotal = self.shards[-1].stop if self.shards else 0

    def part(self, i: int) -> np.ndarray:
        """Shard i's (rows, dim) float16 vectors."""
        return self.parts[i] if self.mmap else load_shard(self.root, self.shards[i], self.dim)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows (any order, repeats allowed) as float32 (len(rows), dim)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.ntotal):
            raise EmsearchError(f"row numbers must lie in [0, {self.ntotal}); got {rows.min()}..{rows.max()}")
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(which):
            sel = np.nonzero(which == s)[0]
            local = rows[sel] - self.starts[s]
            order = np.argsort(local, kind="stable")  # sorted reads are kinder to the page cache
            out[sel[order]] = self.part(s)[local[order]]
        return self.centred(out, rows=rows)

    def iter_blocks(self, block_rows: int = 65536, shards: Sequence[Shard] | None = None):
        """(first row, block) over all rows (or those of `shards`) in order, `block_rows` at a time: float16 as
        stored, or float32 centred when the embeddings have a centre."""
        wanted = None if shards is None else {s.start for s in shards}
        for i, shard in enumerate(self.shards):
            if wanted is None or shard.start in wanted:
                part = self.part(i)
                for j in range(0, shard.rows, block_rows):
                    block = part[j : j + block_rows]
                    first = shard.start + j
                    yield first, block if self.centre is None else self.centred(block,
                                                                                rows=slice(first, first + len(block)))

    def mean(self, labels: np.ndarray | None = None) -> np.ndarray:
        """The mean of the stored rows (float32 (dim,)), summed in float64 one shard at a time; with `labels`
        (one small int per row), the mean of each label's rows instead (float32 (labels.max() + 1, dim))."""
        if labels is None:
            total = np.zeros(self.dim, dtype=np.float64)
            for i in range(len(self.shards)):
                total += self.part(i).sum(0, dtype=np.float64)
            return (total / max(self.ntotal, 1)).astype(np.float32)
        counts = np.bincount(labels)
        totals = np.zeros((len(counts), self.dim), dtype=np.float64)
        for i, shard in enumerate(self.shards):
            part, own = self.part(i), labels[shard.start : shard.stop]
            for label in np.unique(own):
                totals[label] += part[own == label].sum(0, dtype=np.float64)
        return (totals / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def centred(self, x: np.ndarray, *, rows: np.ndarray | slice | None = None,
                lang: str | None = None) -> np.ndarray:
        """Vectors (n, dim) as this index compares them (float32): `centred` on its centre; as they are without one.

        Centred per language, stored `rows` (what x holds) go on their own languages' means, and model vectors
        written in `lang` (a query's language, canonical code) on that language's mean; vectors of an unnamed
        language, or of one the index has no rows in, on the corpus mean."""
        if self.centre is None:
            return np.asarray(x, dtype=np.float32)
        centre = self.centre
        if self.by_lang is not None and rows is not None:
            centre = self.by_lang.means[self.by_lang.of_row[rows]]
        elif self.by_lang is not None and lang in self.by_lang.langs:
            centre = self.by_lang.means[self.by_lang.langs.index(lang)]
        return centred(x, centre)


@dataclass(frozen=True, eq=False)
class LanguageCentres:
    """Per-language centring: stored row i is centred on `means[of_row[i]]`, the mean of its language's rows."""

    langs: tuple[str, ...]  # canonical codes, sorted
    means: np.ndarray  # (len(langs), dim) float32
    of_row: np.ndarray  # (ntotal,) uint16: each row's position in `langs`

    @classmethod
    def recorded(cls, means: Mapping[str, Sequence[float]], rows_of_lang: Callable[[str], np.ndarray | None],
                 ntotal: int) -> LanguageCentres:
        """The means a build recorded (language → mean) with each row's language from the sentence store."""
        langs = tuple(sorted(means))
        try:
            table = np.asarray([means[lang] for lang in langs], dtype=np.float32).reshape(len(langs), -1)
        except ValueError:
            raise EmsearchError("the recorded language means differ in length (a damaged manifest); rerun emsearch "
                                "build-index with the same input") from None
        return cls(langs, table, row_languages(langs, rows_of_lang, ntotal))


def row_languages(langs: Sequence[str], rows_of_lang: Callable[[str], np.ndarray | None], ntotal: int) -> np.ndarray:
    """Each of `ntotal` rows' language as its position in `langs` ((ntotal,) uint16), from `rows_of_lang`
    (`Store.rows_of_lang`); every row must belong to exactly one of `langs`."""
    unset = np.iinfo(np.uint16).max
    if len(langs) >= unset:
        raise EmsearchError(f"{len(langs):,} languages: per-language centring handles at most {unset - 1:,}")
    of_row = np.full(ntotal, unset, dtype=np.uint16)
    for i, lang in enumerate(langs):
        rows = rows_of_lang(lang)
        if rows is None or (len(rows) and (rows[0] < 0 or rows[-1] >= ntotal)) or np.any(of_row[rows] != unset):
            raise EmsearchError(f"the sentence store's rows of {lang} do not match the manifest; rerun emsearch "
                                "build-index with the same input to repair the index")
        of_row[rows] = i
    if np.any(of_row == unset):
        raise EmsearchError("rows of the sentence store have no recorded language mean; rerun emsearch build-index "
                            "with the same input to repair the index")
    return of_row


def centred(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rows of x minus `centre` (a corpus mean (dim,), or one per row (n, dim)), at unit length again (float32).
    Centring on the corpus mean removes the direction every sentence of the corpus shares (its domain, its language
    mix), so that cosines measure what sets sentences apart; centring on each language's mean removes what the
    sentences of one language share, too, so that a query's own language no longer pulls its neighbours."""
    x = np.asarray(x, dtype=np.float32) - np.asarray(centre, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
