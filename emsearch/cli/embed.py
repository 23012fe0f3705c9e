"""`emsearch embed`: sentences in, one vector per input record out (.npy, float32, L2-normalised)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emsearch.cli.app import app, console
from emsearch.config import ENCODE_BATCH_TOKENS
from emsearch.corpus import CorpusSpec


@app.command("embed")
def embed_command(
    input: Path = typer.Argument(..., help="Sentences: plain text (one per line), or parquet / JSONL / TSV with a text column."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the .npy matrix (row i = input record i)."),
    lang: Optional[str] = typer.Option(None, help="Language of the input (checked; the encoder needs no language id)."),
    text_column: str = typer.Option(CorpusSpec.text_column, help="Column (key) holding the sentence, for parquet / JSONL / TSV."),
    model: Optional[Path] = typer.Option(None, help="Model bundle directory; default: the model shipped with emsearch."),
    batch_tokens: int = typer.Option(ENCODE_BATCH_TOKENS, help="Tokens per encoding batch."),
) -> None:
    """Encode sentences into an .npy matrix of unit vectors; an empty line keeps its row (the empty text's vector)."""
    from emsearch.encoder import embed_file  # torch: imported when the command runs, not for --help

    vectors = embed_file(input, output, lang=lang, text_column=text_column, model=model, batch_tokens=batch_tokens)
    console.print(f"{len(vectors):,} sentences → {output} ({vectors.shape[1]} dimensions)", markup=False)
