"""Parallel training data: read and validate X↔English pairs, tokenize once, and draw language-balanced
batches in a reproducible order: length-bucketed token-budget batches (for transformers, where padding costs),
or fixed-size batches of randomly mixed pairs (for bag models, where only the number of negatives matters).

Reproducible order: the batch stream is cut into chunks; chunk k is drawn from an RNG seeded by (seed, k),
so a resumed run regenerates exactly the chunk it stopped in and skips the batches it already did.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emsearch.errors import EmsearchError
from emsearch.languages import UnknownLanguageError, normalize_lang
from emsearch.tokenizer import Tokenizer
from emsearch.train.teacher_cache import TeacherVectors, sentence_keys

REQUIRED_COLUMNS = ("lang", "text", "eng")
_INVALID = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class DataError(EmsearchError):
    """Training data that cannot be used as given (missing columns, empty, unknown language...)."""


@dataclass
class ParallelPairs:
    """Validated pairs in memory: lang is the ISO 639-3 code of `text`; `eng` is its English side."""

    lang: list[str]
    text: list[str]
    eng: list[str]
    skipped: Counter

    def __len__(self) -> int:
        return len(self.text)


def _read_table(path: Path) -> pa.Table:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if path.suffix == ".parquet":
        try:
            schema = pq.read_schema(path)
        except pa.ArrowException as e:
            raise DataError(f"{path}: not a readable parquet file ({e})") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; training pairs need lang, text, eng")
        return pq.read_table(path, columns=list(REQUIRED_COLUMNS))
    # TSV: lang<TAB>text<TAB>eng, optional header line. Undecodable lines are kept (as U+FFFD) to be counted.
    rows: list[list[str]] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            fields = raw.decode("utf-8", errors="replace").rstrip("\r\n").split("\t")
            if lineno == 1 and fields == list(REQUIRED_COLUMNS):
                continue
            if len(fields) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated fields (lang, text, eng), got {len(fields)}")
            rows.append(fields)
    cols = list(zip(*rows)) if rows else [(), (), ()]
    return pa.table({name: list(col) for name, col in zip(REQUIRED_COLUMNS, cols)})


def text_problem(text: str | None) -> str | None:
    """Why one sentence cannot be trained on ("empty side", "invalid text"), or None if it can."""
    if not text or not text.strip():
        return "empty side"
    if _INVALID.search(text):
        return "invalid text"
    return None


def skip_reason(text: str | None, eng: str | None) -> str | None:
    """Why a pair cannot be trained on, or None if it can; an empty side is named before invalid text."""
    problems = (text_problem(text), text_problem(eng))
    return "empty side" if "empty side" in problems else next((p for p in problems if p), None)


def read_pairs(paths: Sequence[str | Path]) -> ParallelPairs:
    """Read parquet/TSV files of (lang, text, eng); bad rows are skipped and counted, bad files raise DataError."""
    if not paths:
        raise DataError("no training data given: pass parquet or TSV files with columns lang, text, eng")
    out = ParallelPairs([], [], [], Counter())
    for path in map(Path, paths):
        table = _read_table(path)
        kept = 0
        for lang, text, eng in zip(*(table.column(c).to_pylist() for c in REQUIRED_COLUMNS)):
            reason = skip_reason(text, eng)
            if reason:
                out.skipped[reason] += 1
                continue
            try:
                code = normalize_lang(lang or "")
            except UnknownLanguageError as e:
                raise DataError(f"{path}: {e}") from None
            out.lang.append(code)
            out.text.append(text.strip())
            out.eng.append(eng.strip())
            kept += 1
        if kept == 0:
            raise DataError(f"{path}: no usable pairs ({table.num_rows} rows, all empty or invalid)")
    return out


def draw_order(pairs: ParallelPairs, alpha: float) -> list[str]:
    """The distinct English sentences, the most often drawn by training (language sampling p ∝ n^alpha) first;
    ties in hash order, so the order is the same on every machine."""
    n = Counter(pairs.lang)
    total = sum(c**alpha for c in n.values())
    per_pair = {lang: c**alpha / total / c for lang, c in n.items()}
    weight: dict[str, float] = defaultdict(float)
    for lang, eng in zip(pairs.lang, pairs.eng):
        weight[eng] += per_pair[lang]
    sentences = list(weight)
    keys = sentence_keys(sentences)
    order = np.lexsort((keys, -np.array([weight[s] for s in sentences])))
    return [sentences[i] for i in order]


class Ragged:
    """Variable-length int32 sequences in one flat array with offsets: compact for millions of sentences."""

    def __init__(self, seqs: Sequence[Sequence[int]]):
        self.lengths = np.fromiter((len(s) for s in seqs), dtype=np.int32, count=len(seqs))
        self.offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(self.offsets[-1]))

    def batch(self, rows: np.ndarray) -> np.ndarray:
        """Rows → padded (len(rows), max length) int64 array, 0 = pad."""
        width = int(self.lengths[rows].max())
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            a, b = self.offsets[r], self.offsets[r + 1]
            out[i, : b - a] = self.flat[a:b]
        return out


def _hash(texts: Sequence[str]) -> np.ndarray:
    return np.fromiter((zlib.crc32(t.lower().encode("utf-8")) for t in texts), dtype=np.int64, count=len(texts))


@dataclass
class Batch:
    src: np.ndarray  # (B, T) token ids of the non-English side
    tgt: np.ndarray  # (B, T') token ids of the English side
    src_lang: np.ndarray  # (B,) index into the language table
    duplicates: np.ndarray  # (B, B) bool: rows sharing a side (not negatives of each other)
    teacher: np.ndarray | None = None  # (B, D) float32: the teacher's vector of the English side (0 if uncached)
    has_teacher: np.ndarray | None = None  # (B,) bool: which rows have one


class PairDataset:
    """Tokenized pairs plus the reproducible, language-balanced, token-budget batch stream."""

    CHUNK_PAIRS = 50_000

    def __init__(self, pairs: ParallelPairs, tokenizer: Tokenizer, languages: Sequence[str], max_length_ratio: float,
                 teacher: TeacherVectors | None = None):
        self.languages = list(languages)
        index = {lang: i for i, lang in enumerate(self.languages)}
        src = tokenizer.encode(pairs.text)
        tgt = tokenizer.encode(pairs.eng)
        ls, lt = np.array([len(s) for s in src]), np.array([len(t) for t in tgt])
        ratio_ok = np.maximum(ls + 8, lt + 8) <= max_length_ratio * np.minimum(ls + 8, lt + 8)
        self.skipped = Counter(pairs.skipped)
        self.skipped["length ratio"] += int((~ratio_ok).sum())
        keep = np.flatnonzero(ratio_ok)
        self.src = Ragged([src[i] for i in keep])
        self.tgt = Ragged([tgt[i] for i in keep])
        self.lang = np.array([index[pairs.lang[i]] for i in keep], dtype=np.int64)
        self.src_hash = _hash([pairs.text[i] for i in keep])
        self.tgt_hash = _hash([pairs.eng[i] for i in keep])
        self.teacher = teacher
        self.teacher_row = teacher.lookup([pairs.eng[i] for i in keep]) if teacher else None
        self.teacher_share = float((self.teacher_row >= 0).mean()) if teacher else 0.0  # pairs with a teacher vector
        self.width = np.maximum(self.src.lengths, self.tgt.lengths)
        self.rows_by_lang = [np.flatnonzero(self.lang == i) for i in range(len(self.languages))]
        self.counts = Counter({self.languages[i]: len(r) for i, r in enumerate(self.rows_by_lang) if len(r)})

    def __len__(self) -> int:
        return len(self.lang)

    def piece_counts(self, vocab_size: int) -> np.ndarray:
        """How often each piece id occurs in the distinct sentences of the pairs, both sides: the evidence training
        had for its row (an English verse paired with a hundred languages counts once)."""
        counts = np.zeros(vocab_size, dtype=np.int64)
        for side, hashes in ((self.src, self.src_hash), (self.tgt, self.tgt_hash)):
            distinct = np.zeros(len(hashes), dtype=bool)
            distinct[np.unique(hashes, return_index=True)[1]] = True
            counts += np.bincount(side.flat[np.repeat(distinct, side.lengths)], minlength=vocab_size)
        return counts

    def language_probs(self, alpha: float) -> np.ndarray:
        n = np.array([len(r) for r in self.rows_by_lang], dtype=np.float64)
        p = np.where(n > 0, n**alpha, 0.0)  # a language with no pairs (eng) gets nothing, even at alpha 0
        return p / p.sum()

    def chunk(self, k: int, *, seed: int, alpha: float, batch_tokens: int, batch_pairs: int = 0,
              batch_langs: int = 0) -> list[np.ndarray]:
        """Batches (arrays of row indices) of chunk k: sample rows by language, then either cut them in random
        order into `batch_pairs`-row batches, or (batch_pairs 0) sort them by length and cut by tokens.

        With `batch_langs`, a batch is made of that many same-language runs of rows (batch_pairs / batch_langs
        each), so a sentence's in-batch negatives include many of its own language (the ones retrieval and
        mining must tell apart; no gain measured on the shipped shape, training/README.md)."""
        rng = np.random.default_rng([seed, k])
        per_lang = rng.multinomial(self.CHUNK_PAIRS, self.language_probs(alpha))
        rows = np.concatenate(
            [rng.choice(r, size=m) for r, m in zip(self.rows_by_lang, per_lang) if m and len(r)]
        )
        if batch_pairs:
            rows = rng.permutation(rows)
            if batch_langs:
                run = max(1, batch_pairs // batch_langs)
                rows = rows[np.argsort(self.lang[rows], kind="stable")]  # by language, random within one
                one_lang = np.split(rows, np.flatnonzero(np.diff(self.lang[rows])) + 1)
                runs = [r[i : i + run] for r in one_lang for i in range(0, len(r), run)]
                rows = np.concatenate([runs[i] for i in rng.permutation(len(runs))])
            return [rows[i : i + batch_pairs] for i in range(0, len(rows) - batch_pairs + 1, batch_pairs)]
        rows = rows[np.lexsort((rng.random(len(rows)), -self.width[rows]))]  # longest first, random ties
        batches, start = [], 0
        while start < len(rows):
            size = max(1, batch_tokens // int(self.width[rows[start]]))
            batches.append(rows[start : start + size])
            start += size
        rng.shuffle(batches)  # type: ignore[arg-type]
        return batches

    def stream(self, *, seed: int, alpha: float, batch_tokens: int, batch_pairs: int = 0, batch_langs: int = 0,
               start: tuple[int, int] = (0, 0), rank: int = 0, world: int = 1) -> Iterator[tuple[tuple[int, int], Batch]]:
        """Endless (position, batch) stream from `start`; position (chunk, i) is where to resume after it."""
        k, i = start
        while True:
            batches = self.chunk(k, seed=seed, alpha=alpha, batch_tokens=batch_tokens, batch_pairs=batch_pairs,
                                 batch_langs=batch_langs)
            usable = len(batches) - len(batches) % world  # every rank gets the same number per chunk
            for j in range(i, usable, world):
                rows = batches[j + rank]
                next_pos = (k, j + world) if j + world < usable else (k + 1, 0)
                yield next_pos, self.make_batch(rows)
            k, i = k + 1, 0

    def make_batch(self, rows: np.ndarray) -> Batch:
        dup = (self.tgt_hash[rows, None] == self.tgt_hash[None, rows]) | (
            self.src_hash[rows, None] == self.src_hash[None, rows]
        )
        batch = Batch(self.src.batch(rows), self.tgt.batch(rows), self.lang[rows], dup)
        if self.teacher is not None:
            found = self.teacher_row[rows]
            batch.has_teacher = found >= 0
            batch.teacher = np.zeros((len(rows), self.teacher.dim), dtype=np.float32)
            batch.teacher[batch.has_teacher] = self.teacher.vectors[found[batch.has_teacher]]
        return batch
