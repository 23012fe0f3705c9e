"""`emsearch embed`: sentences in, one vector per line out (.npy, float32, L2-normalised)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from emsearch.atomic import atomic_path
from emsearch.cli.app import app, console
from emsearch.errors import EmsearchError


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
    if input.is_dir():
        raise EmsearchError(f"{input} is a directory: give a text or parquet file")
    if not input.is_file():
        raise EmsearchError(f"{input}: no such file")
    if not output.parent.is_dir():
        raise EmsearchError(f"{output.parent}: no such directory for the output")
    if input.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if column is None:
            raise EmsearchError(f"{input} is parquet: name the text column with --column")
        try:
            names = pq.read_schema(input).names
        except pa.ArrowException as e:
            raise EmsearchError(f"{input}: not a readable parquet file ({' '.join(str(e).split())})") from None
        if column not in names:
            raise EmsearchError(f"{input}: no column {column!r} (columns: {', '.join(names)})")
        texts = [t or "" for t in pq.read_table(input, columns=[column]).column(column).to_pylist()]
    else:
        texts = read_text_lines(input)
    if not texts:
        raise EmsearchError(f"{input}: the file is empty")
    vectors = Encoder.load(model).encode(texts, batch_tokens=batch_tokens, progress=len(texts) > 5000)
    with atomic_path(output) as tmp, open(tmp, "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    console.print(f"{len(texts):,} sentences → {output} ({vectors.shape[1]} dimensions)", markup=False)
