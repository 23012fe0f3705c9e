"""`emsearch mine`: margin-based bitext mining between two languages of built indexes (see emsearch.search.mine)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from emsearch.errors import EmsearchError
from emsearch.cli.app import app, console
from emsearch.cli.options import open_index


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
                                                         "mining threshold (ratio margin), else keep all."),
    k: int = typer.Option(4, help="Neighbours per sentence for the margin."),
    margin: str = typer.Option("ratio", help="Margin: ratio, distance or absolute."),
    mode: str = typer.Option("max", help="Retrieval mode: max, fwd, bwd or intersect."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists to visit; default: the index's calibrated value."),
    chunk: int = typer.Option(8192, help="Sentences searched at a time (bounds memory)."),
    model: Optional[Path] = typer.Option(None, help="Model bundle; default: the model the index was built with."),
) -> None:
    """Mine translation pairs: kNN both ways over the whole target side, margin scores, one output file.

    Finished search chunks are kept in OUTPUT.partial/ until the output is written, so rerunning an interrupted
    command resumes where it stopped.
    """
    from emsearch.index.reader import Index
    from emsearch.search.mine import FORMATS, MineConfig, default_threshold, mine_to_file
    from emsearch.search.mining import check_choice

    if index is not None and (src_index or tgt_index):
        raise EmsearchError("give --index, or --src-index with --tgt-index, not both")
    if (src_index is None) != (tgt_index is None):
        raise EmsearchError("--src-index and --tgt-index go together; for one index holding both languages use --index")
    fmt = check_choice(format or ("tsv" if output.suffix.lower() == ".tsv" else "parquet"), FORMATS, "output format")
    cfg = MineConfig(src, tgt, k=k, margin=margin, mode=mode, nprobe=nprobe, chunk=chunk).checked()
    with ExitStack() as stack:
        if src_index is None or src_index.resolve() == tgt_index.resolve():
            a = b = stack.enter_context(open_index(index or src_index, model))
        else:
            a = stack.enter_context(open_index(src_index, model))
            b = stack.enter_context(Index.open(tgt_index, a.encoder))  # the same model, or an IndexOpenError
        cfg = replace(cfg, threshold=default_threshold(threshold, margin, a.encoder))
        result = mine_to_file(a, b, cfg, output, fmt, console=console)
    source = "none given or in the model bundle: every mined pair kept" if cfg.threshold is None else (
        f"{cfg.threshold:g}" + (" from the model bundle" if threshold is None else ""))
    console.print(f"{result.written:,} pairs → {result.output} ({result.src_sentences:,} × {result.tgt_sentences:,} "
                  f"sentences, threshold {source}, {result.duplicates:,} duplicate pairs dropped, "
                  f"{result.seconds:.1f} s)")
