"""`emsearch eval retrieval|bucc`: retrieval accuracy and bitext-mining F1 of a model, as a table or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from emsearch.errors import EmsearchError
from emsearch.cli.app import app
from emsearch.search.mine import MineConfig

eval_app = typer.Typer(help="Evaluate a model: retrieval accuracy (xSIM) and BUCC-style mining F1.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")
out = Console()


def split_langs(langs: Optional[str]) -> Optional[list[str]]:
    return [x.strip() for x in langs.split(",") if x.strip()] if langs else None


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
    from emsearch.encoder import Encoder
    from emsearch.evaluate import RetrievalReport, paired_accuracy, retrieval_accuracy, tatoeba_accuracy

    if not path.exists():
        raise EmsearchError(f"{path}: no such file or directory")
    if pivot_file is not None and (path.is_dir() or path.suffix == ".parquet"):
        raise EmsearchError("a second file is only for two paired text files; drop it for a parquet file or folder")
    encoder = Encoder.load(model)
    if path.is_dir():
        report = tatoeba_accuracy(encoder, path, split_langs(langs), pivot)
    elif path.suffix == ".parquet":
        report = retrieval_accuracy(encoder, path, split_langs(langs), pivot)
    elif pivot_file is None:
        raise EmsearchError(f"{path} is a text file: give its line-aligned pivot file as the second argument")
    else:
        report = RetrievalReport(pivot, [paired_accuracy(encoder, path, pivot_file)])
    if as_json:
        print(json.dumps({"pivot": report.pivot, "average": report.average, "xsim_error": 1 - report.average,
                          "langs": {s.lang: {"to_pivot": s.to_pivot, "from_pivot": s.from_pivot}
                                    for s in report.scores}}))
        return
    table = Table(title=f"top-1 retrieval accuracy against {report.pivot}")
    for name in ("language", f"→ {report.pivot}", f"{report.pivot} →", "mean", "xSIM error %"):
        table.add_column(name, justify="left" if name == "language" else "right")
    for s in report.scores:
        table.add_row(s.lang, f"{s.to_pivot:.4f}", f"{s.from_pivot:.4f}", f"{s.mean:.4f}", f"{100 * (1 - s.mean):.2f}")
    table.add_section()
    table.add_row("average", "", "", f"{report.average:.4f}", f"{100 * (1 - report.average):.2f}")
    out.print(table)


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
    from emsearch.evaluate import bucc

    report = bucc(Encoder.load(model), folder, pair, k=k, margin=margin, mode=mode, centre=centre,
                  progress=not as_json)
    points = [("best F1", report.best)] + ([("at threshold", report.at(threshold))] if threshold is not None else [])
    if as_json:
        row = {"pair": report.pair, "gold": report.gold, "candidates": report.candidates, "margin": margin,
               "mode": mode, "k": k, "centre": centre, **asdict(report.best)}
        if threshold is not None:
            row["at_threshold"] = asdict(points[1][1])
        print(json.dumps(row))
        return
    centring = ", centred" if centre else ""
    table = Table(title=f"{report.pair}: {report.gold:,} gold pairs, {margin} margin, mode {mode}, k={k}{centring}")
    for name in ("", "threshold", "precision", "recall", "F1", "pairs"):
        table.add_column(name, justify="right")
    for name, p in points:
        table.add_row(name, f"{p.threshold:.4f}", f"{p.precision:.4f}", f"{p.recall:.4f}", f"{p.f1:.4f}",
                      f"{p.mined:,}")
    out.print(table)
