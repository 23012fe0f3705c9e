"""`emsearch eval retrieval|bucc`: retrieval accuracy and bitext-mining F1 of a model, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from emsearch.cli.app import app
from emsearch.search.mine import MineConfig
from emsearch.search.query import split_langs

eval_app = typer.Typer(help="Evaluate a model: retrieval accuracy (xSIM) and BUCC-style mining F1.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")
out = Console()


@eval_app.command("retrieval")
def retrieval_command(
    path: Path = typer.Argument(..., help="Multi-way parquet (id, lang, text), a folder of Tatoeba-style pairs "
                                          "(NAME.xxx-eng.xxx + NAME.xxx-eng.eng), or the first of two paired files."),
    pivot_file: Optional[Path] = typer.Argument(None, help="With a text file as PATH: the line-aligned pivot file."),
    langs: Optional[str] = typer.Option(None, help="Comma-separated languages to evaluate; default: all."),
    pivot: str = typer.Option("eng", help="Pivot language every language is compared against."),
    model: Optional[Path] = typer.Option(None, help="Model bundle directory; default: the shipped model."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line instead of a table."),
) -> None:
    """Top-1 retrieval accuracy both ways per language, the average, and xSIM error (1 − accuracy)."""
    from emsearch.evaluate import evaluate_retrieval

    report = evaluate_retrieval(path, pivot_file, langs=split_langs(langs), pivot=pivot, model=model)
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        out.print(report.to_table())


@eval_app.command("bucc")
def bucc_command(
    folder: Path = typer.Argument(..., help="Folder with PAIR.xx.tsv and PAIR.en.tsv (id<TAB>sentence lines) and "
                                            "PAIR.gold.tsv (src_id<TAB>tgt_id)."),
    pair: str = typer.Option(..., help="Language pair as SRC-TGT, e.g. de-en (names the files)."),
    model: Optional[Path] = typer.Option(None, help="Model bundle directory; default: the shipped model."),
    k: int = typer.Option(MineConfig.k, help="Neighbours for the margin."),
    margin: str = typer.Option(MineConfig.margin, help="Margin: ratio, distance or absolute."),
    mode: str = typer.Option(MineConfig.mode, help="Retrieval mode: max, fwd, bwd or intersect."),
    threshold: Optional[float] = typer.Option(None, help="Also report the scores at this threshold."),
    centre: bool = typer.Option(True, "--centre/--no-centre", help="Centre both sides on their common mean first, as an index holding both does."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line instead of a table."),
) -> None:
    """Mine a BUCC-style task with exact kNN: precision, recall, F1 and the threshold that maximises F1."""
    from emsearch.encoder import Encoder
    from emsearch.search.bucc import bucc

    report = bucc(Encoder.load(model), folder, pair, k=k, margin=margin, mode=mode, centre=centre,
                  progress=not as_json)
    if as_json:
        print(json.dumps(report.to_json(threshold)))
    else:
        out.print(report.to_table(threshold))
