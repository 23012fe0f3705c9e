"""`emsearch export`: a static model as a model2vec or sentence-transformers folder (`emsearch.interop.export`)."""

from __future__ import annotations

from pathlib import Path

import typer

from emsearch.cli.app import app, console


@app.command("export")
def export_command(
    model: Path = typer.Argument(..., help="Model bundle directory, e.g. emsearch/models/default."),
    out: Path = typer.Argument(..., help="Folder to write (replaced whole if it exists)."),
    format: str = typer.Option(..., "--format", help="model2vec or sentence-transformers."),
) -> None:
    """Write a static model where its users already work: model2vec's StaticModel.from_pretrained(OUT) or
    sentence-transformers' SentenceTransformer(OUT) load the folder offline and give the same vectors."""
    from emsearch.interop.export import export_model  # torch: imported when the command runs, not for --help

    export_model(model, out, format=format)
    console.print(f"{model} → {out} ({format})", markup=False)
