"""`emsearch train`: train an EMS encoder from a recipe file and/or flags."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emsearch.cli.app import app, console
from emsearch.config import PRESETS


@app.command("train")
def train_command(
    recipe: Optional[Path] = typer.Argument(None, help="Recipe JSON (see training/); flags below override it."),
    data: Optional[list[Path]] = typer.Option(None, "--data", help="Parallel data: parquet or TSV with lang, text, eng. Repeatable."),
    out: Optional[Path] = typer.Option(None, help="Run directory (checkpoints, log.jsonl, model/)."),
    preset: Optional[str] = typer.Option(None, help=f"Model shape: {', '.join(PRESETS)}."),
    steps: Optional[int] = typer.Option(None, help="Optimiser steps."),
    batch_tokens: Optional[int] = typer.Option(None, help="Tokens per side per batch: length-bucketed batches "
                                               "instead of a number of pairs (transformer presets)."),
    batch_pairs: Optional[int] = typer.Option(None, help="Pairs per batch in random order: the in-batch negatives "
                                              "(default 2048); 0 = batches by --batch-tokens."),
    init_from: Optional[Path] = typer.Option(None, help="Model bundle whose tokenizer and token embeddings start "
                                             "this run (a staged recipe: blocks over trained embeddings)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate."),
    seed: Optional[int] = typer.Option(None, help="Seed for data order, initialisation and dropout."),
    eval_file: Optional[Path] = typer.Option(None, help="Multi-way parquet (id, lang, text) for periodic retrieval accuracy."),
    xtr_weight: Optional[float] = typer.Option(None, help="Weight of the XTR loss (0 disables it)."),
    contrastive_weight: Optional[float] = typer.Option(None, help="Weight of the contrastive loss (0 disables it)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train an EMS encoder (XTR + contrastive) on parallel pairs; writes a model bundle to OUT/model."""
    from emsearch.train.loop import train
    from emsearch.train.recipe import read_recipe

    cfg, given = read_recipe(recipe, data=data or None, out=out, preset=preset, steps=steps,
                             batch_tokens=batch_tokens, batch_pairs=batch_pairs, init_from=init_from, lr=lr,
                             seed=seed, eval_file=eval_file, xtr_weight=xtr_weight,
                             contrastive_weight=contrastive_weight)
    bundle = train(cfg, resume=resume, given=given, console=console)
    console.print(f"model written to {bundle}", markup=False)
