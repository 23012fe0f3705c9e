"""Where a training run starts, as named steps: its tokenizer, the teacher's vector of each of its pieces, the
first values of its token table, and the teacher prior applied to the table at export.

1. `run_tokenizer`: the run's SentencePiece model, copied (tokenizer_path, init_from) or trained on the pairs,
   then joined with the teacher's pieces where the recipe asks (teacher_pieces.py).
2. `cache_piece_vectors` / `load_piece_vectors`: the teacher's vector of each piece's text, one forward pass per
   piece, cached once per tokenizer (`emsearch cache-teacher --pieces`).
3. `bundle_start` (init_from: stage 2 of a staged recipe) or `teacher_start` (teacher_init): the table's first
   values; `piece_start` reduces the teacher's vectors by PCA to the model's width, at standard deviation
   `teacher_init`. Both starts apply to a fresh run only; `--resume` restores the checkpoint instead.
4. `piece_prior` (teacher_prior): the exported table with each row shrunk towards a ridge map of its piece's
   teacher vector, a piece seen n times in the pairs keeping n / (n + teacher_prior) of its trained row.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from emsearch.atomic import atomic_path, file_sha256, write_text_atomic
from emsearch.config import ConfigError, ModelConfig, TokenizerConfig, TrainConfig
from emsearch.encoder import unpack_weights
from emsearch.model import EMSEncoder
from emsearch.progress import bar
from emsearch.tokenizer import Tokenizer, train_tokenizer
from emsearch.train.teacher_cache import ENCODE_BATCH, TEACHER, TeacherError, claim_cache, read_meta
from emsearch.train.teacher_pieces import join_teacher_pieces, teacher_words

PIECE_PART = 4096  # pieces per atomic file of a piece cache
PIECE_TEXTS = "texts.json"  # the text of each piece of the folder's tokenizer, for reuse by the next one


# --- 1. the tokenizer -------------------------------------------------------------------------------------------

def run_tokenizer(cfg: TrainConfig, model_cfg: ModelConfig, pairs, out: Path, rank: int = 0, world: int = 1,
                  say=print) -> Tokenizer:
    """The run's SentencePiece model (OUT/tokenizer.model, made once): copied from tokenizer_path or init_from's
    bundle, or trained on the pairs (and then joined with the teacher's pieces where the recipe asks)."""
    path = out / "tokenizer.model"
    given = cfg.tokenizer_path or (str(Path(cfg.init_from) / "tokenizer.model") if cfg.init_from else None)
    if not path.is_file():
        if given:
            shutil.copyfile(given, path)
        elif rank == 0:
            by_lang: dict[str, list[str]] = {}
            for lang, text in zip(pairs.lang, pairs.text):
                by_lang.setdefault(lang, []).append(text)
            by_lang.setdefault("eng", []).extend(sorted(set(pairs.eng)))
            tok_cfg = replace(cfg.tokenizer, vocab_size=model_cfg.vocab_size)
            say(f"training a {tok_cfg.vocab_size}-piece SentencePiece model")
            if not (tok_cfg.teacher_pieces or tok_cfg.teacher_words):
                train_tokenizer(by_lang, tok_cfg, path)
            else:  # the run's tokenizer appears only once joined: a killed run never keeps a half-made one
                _joined_tokenizer(train_tokenizer(by_lang, tok_cfg, out / "tokenizer-own.model"), tok_cfg, path, say)
        if world > 1:
            dist.barrier()
    return Tokenizer(path, model_cfg.max_len)


def _joined_tokenizer(own: Path, cfg: TokenizerConfig, path: Path, say) -> None:
    """Our trained SentencePiece model with the teacher's pieces for the weak scripts, then its whole words that
    ours cuts up, joined (teacher_pieces.py), written to `path`."""
    scripts = path.with_name("tokenizer-scripts.model")
    joined = join_teacher_pieces(own, scripts, cfg.teacher_pieces, cfg.teacher_pieces_below)
    say(f"joined {sum(joined.values()):,} of the teacher's pieces: "
        + (", ".join(f"{script.title()} {n:,}" for script, n in joined.items()) or "no script was short"))
    if cfg.teacher_words:
        words = join_teacher_pieces(scripts, scripts, cfg.teacher_words, sys.maxsize,
                                    teacher=teacher_words(scripts, cfg.teacher_words_cut))
        say(f"joined {sum(words.values()):,} of the teacher's whole words that ours cuts into "
            f"{cfg.teacher_words_cut}+ pieces")
    scripts.replace(path)


# --- 2. the teacher's piece vectors ----------------------------------------------------------------------------

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
    cache = claim_cache(cache)
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
    meta = read_meta(cache)
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


# --- 3. the table's start --------------------------------------------------------------------------------------

def bundle_start(encoder: EMSEncoder, bundle: str, say) -> None:
    """Start from another bundle's token embeddings (and token weights): stage 2 of a staged recipe. The bundle
    may store its table as int8 rows (the shipped model does)."""
    weights = unpack_weights(load_file(str(Path(bundle) / "model.safetensors")))
    own = encoder.state_dict()
    taken = [k for k in ("tok_emb.weight", "tok_weight.weight") if k in weights and k in own
             and weights[k].shape == own[k].shape]
    if "tok_emb.weight" not in taken:
        raise ConfigError(f"init_from {bundle}: its token embeddings do not fit this model (other vocabulary or width)")
    encoder.load_state_dict({k: weights[k] for k in taken}, strict=False)
    say(f"token embeddings from {bundle} ({', '.join(taken)})")


def teacher_start(encoder: EMSEncoder, piece_vectors: np.ndarray, std: float) -> int:
    """Start the token table from the teacher's vector of each piece (`load_piece_vectors`), reduced to
    the model's width by PCA, at standard deviation `std`: translations of a piece start near each other, which
    pays most for the pieces training sees too rarely to place. Pieces with no text keep their random start.
    Returns how many rows were set."""
    table = encoder.tok_emb.weight
    rows, start = piece_start(piece_vectors, table.shape[1], std)
    with torch.no_grad():
        table[torch.from_numpy(rows), : start.shape[1]] = torch.from_numpy(start).to(table.dtype)
    return len(rows)


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


# --- 4. the teacher prior --------------------------------------------------------------------------------------

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
