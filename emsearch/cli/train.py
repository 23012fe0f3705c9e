"""`emsearch train`: train an EMS encoder from a recipe file and/or flags."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from emsearch.errors import EmsearchError
from emsearch.cli.app import app, console
from emsearch.config import PRESETS, TrainConfig, load_json


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
    from emsearch.train import train

    cfg = load_json(TrainConfig, recipe) if recipe else TrainConfig()
    overrides = {"data": tuple(map(str, data)) if data else None, "out": str(out) if out else None,
                 "preset": preset, "steps": steps, "batch_tokens": batch_tokens, "batch_pairs": batch_pairs,
                 "init_from": str(init_from) if init_from else None, "lr": lr, "seed": seed,
                 "eval_file": str(eval_file) if eval_file else None, "xtr_weight": xtr_weight,
                 "contrastive_weight": contrastive_weight}
    if batch_tokens is not None and batch_pairs is None:
        overrides["batch_pairs"] = 0  # a token budget asked for is a token budget used
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if preset is not None:
        cfg = replace(cfg, model=None)
    if not cfg.data and not resume:
        raise EmsearchError("no training data: give --data FILE or a recipe with \"data\"")
    if resume:
        given = {k for k, v in overrides.items() if v is not None}
        _check_resume(cfg, given | (set(json.loads(recipe.read_text(encoding="utf-8"))) if recipe else set()))
    bundle = train(cfg, resume=resume, console=console)
    console.print(f"model written to {bundle}", markup=False)


def _check_resume(cfg: TrainConfig, given: set[str]) -> None:
    """--resume replays the run recorded in OUT; a flag or recipe field that disagrees would be silently ignored."""
    path = Path(cfg.out) / "train_config.json"
    if not path.is_file():
        return  # train() says there is nothing to resume
    recorded = load_json(TrainConfig, path)
    differ = sorted(k for k in given - {"out", "model"} if getattr(recorded, k) != getattr(cfg, k))
    if differ:
        raise EmsearchError(f"{path} records a different {', '.join(differ)}: --resume continues that run as it was "
                         "started; drop the change, or start a new run with another --out")
