"""`emsearch embed`: sentences in, one vector per input record out (.npy, float32, L2-normalised)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from emsearch.atomic import atomic_path
from emsearch.cli.app import app, console
from emsearch.config import ENCODE_BATCH_TOKENS
from emsearch.corpus import Corpus, CorpusSpec
from emsearch.errors import EmsearchError


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
    from emsearch.encoder import Encoder  # torch: imported when the command runs, not for --help

    if input.is_dir():
        raise EmsearchError(f"{input} is a directory: give a text, parquet, JSONL or TSV file")
    if not output.parent.is_dir():
        raise EmsearchError(f"{output.parent}: no such directory for the output")
    if output.is_dir():
        raise EmsearchError(f"{output} is a directory: give a file name for the vectors, e.g. {output / 'x.npy'}")
    texts = list(Corpus(CorpusSpec(input, text_column=text_column, lang=lang)).texts())
    if not texts:
        raise EmsearchError(f"{input}: no sentences")
    vectors = Encoder.load(model).encode(texts, batch_tokens=batch_tokens, progress=len(texts) > 5000)
    with atomic_path(output) as tmp, open(tmp, "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    console.print(f"{len(texts):,} sentences → {output} ({vectors.shape[1]} dimensions)", markup=False)
