"""`emsearch mine`: margin-based bitext mining between two languages of built indexes (see emsearch.search.mine)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emsearch.cli.app import app, console
from emsearch.search.mine import MineConfig, mine


@app.command("mine")
def mine_command(
    src: str = typer.Option(..., help="Source language (de, deu or deu_Latn)."),
    tgt: str = typer.Option(..., help="Target language."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the pairs."),
    index: Optional[Path] = typer.Option(None, help="Index holding both languages; default: the only index under "
                                                    "indexes/."),
    src_index: Optional[Path] = typer.Option(None, help="Index of the source side (with --tgt-index)."),
    tgt_index: Optional[Path] = typer.Option(None, help="Index of the target side (with --src-index)."),
    format: Optional[str] = typer.Option(None, "--format", help="parquet or tsv; default: tsv for a .tsv output, "
                                                                "else parquet."),
    threshold: Optional[float] = typer.Option(None, help="Keep pairs scoring at least this; default: the model's "
                                                         "mining threshold for the pair (ratio margin), else keep "
                                                         "all."),
    k: int = typer.Option(MineConfig.k, help="Neighbours per sentence for the margin."),
    margin: str = typer.Option(MineConfig.margin, help="Margin: ratio, distance or absolute."),
    mode: str = typer.Option(MineConfig.mode, help="Retrieval mode: max, fwd, bwd or intersect."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists to visit; default: the index's calibrated value."),
    chunk: int = typer.Option(MineConfig.chunk, help="Sentences searched at a time (bounds memory)."),
    model: Optional[Path] = typer.Option(None, help="Model bundle; default: the model the index was built with."),
) -> None:
    """Mine translation pairs: kNN both ways over the whole target side, margin scores, one output file.

    Finished search chunks are kept in OUTPUT.partial/ until the output is written, so rerunning an interrupted
    command resumes where it stopped.
    """
    result = mine(src, tgt, output, index=index, src_index=src_index, tgt_index=tgt_index, format=format,
                  threshold=threshold, k=k, margin=margin, mode=mode, nprobe=nprobe, chunk=chunk, model=model,
                  console=console)
    source = "none given or in the model bundle: every mined pair kept" if result.threshold is None else (
        f"{result.threshold:g}" + (" from the model bundle" if threshold is None else ""))
    console.print(f"{result.written:,} pairs → {result.output} ({result.src_sentences:,} × {result.tgt_sentences:,} "
                  f"sentences, threshold {source}, {result.duplicates:,} duplicate pairs dropped, "
                  f"{result.seconds:.1f} s)")
