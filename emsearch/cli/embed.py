"""`emsearch embed`: sentences in, one vector per line out (.npy, float32, L2-normalised)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from emsearch.errors import EmsearchError
from emsearch.cli.app import app, console


@app.command("embed")
def embed_command(
    input: Path = typer.Argument(..., help="Text file (one sentence per line) or parquet (with --column)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the .npy matrix (row i = input line i)."),
    lang: Optional[str] = typer.Option(None, help="Language of the input (checked; the encoder needs no language id)."),
    column: Optional[str] = typer.Option(None, help="Text column when INPUT is parquet."),
    model: Optional[Path] = typer.Option(None, help="Model bundle directory; default: the model shipped with emsearch."),
    batch_tokens: int = typer.Option(16384, help="Tokens per encoding batch."),
) -> None:
    """Encode sentences into an .npy matrix of unit vectors."""
    from emsearch.encoder import Encoder
    from emsearch.evaluate import read_text_lines
    from emsearch.languages import normalize_lang

    if lang is not None:
        normalize_lang(lang)
    if not input.is_file():
        raise EmsearchError(f"{input}: no such file")
    if input.suffix == ".parquet":
        import pyarrow.parquet as pq

        if column is None:
            raise EmsearchError(f"{input} is parquet: name the text column with --column")
        names = pq.read_schema(input).names
        if column not in names:
            raise EmsearchError(f"{input}: no column {column!r} (columns: {', '.join(names)})")
        texts = [t or "" for t in pq.read_table(input, columns=[column]).column(column).to_pylist()]
    else:
        texts = read_text_lines(input)
    if not texts:
        raise EmsearchError(f"{input}: the file is empty")
    vectors = Encoder.load(model).encode(texts, batch_tokens=batch_tokens, progress=len(texts) > 5000)
    tmp = output.with_name(output.name + ".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(output)
    console.print(f"{len(texts):,} sentences → {output} ({vectors.shape[1]} dimensions)", markup=False)
