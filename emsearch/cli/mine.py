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
    threshold: str = typer.Option(MineConfig.threshold, help="'auto': the F1-best estimate from the corpus's "
                                                             "margins; 'model': the model's mining threshold for the "
                                                             "pair (ratio margin); or keep pairs scoring at least X."),
    min_precision: Optional[float] = typer.Option(None, help="The lowest threshold whose precision estimated from "
                                                             "the corpus's margins reaches this (e.g. 0.95); "
                                                             "implies --threshold auto."),
    k: int = typer.Option(MineConfig.k, help="Neighbours per sentence for the margin."),
    margin: str = typer.Option(MineConfig.margin, help="Margin: ratio, distance or absolute."),
    mode: str = typer.Option(MineConfig.mode, help="Retrieval mode: max, fwd, bwd or intersect."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists to visit; default: the index's calibrated value."),
    chunk: int = typer.Option(MineConfig.chunk, help="Sentences searched at a time (bounds memory)."),
    model: Optional[Path] = typer.Option(None, help="Model bundle; default: the model the index was built with."),
    ray: bool = typer.Option(False, "--ray", help="Search the kNN on Ray actors (a local instance, or RAY_ADDRESS / "
                                                  "--ray-address); the index folders must be on a path every node "
                                                  "reads."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join, e.g. 'auto' (implies --ray)."),
    workers: int = typer.Option(MineConfig.workers, help="Ray actors with --ray; 0 = one per cluster CPU."),
) -> None:
    """Mine translation pairs: kNN both ways over the whole target side, margin scores, one output file.

    Finished search chunks are kept in OUTPUT.partial/ until the output is written, so rerunning an interrupted
    command resumes where it stopped. OUTPUT.json records the threshold, why, and its estimated precision/recall.
    """
    result = mine(src, tgt, output, index=index, src_index=src_index, tgt_index=tgt_index, format=format,
                  threshold=threshold, min_precision=min_precision, k=k, margin=margin, mode=mode, nprobe=nprobe,
                  chunk=chunk, model=model, ray=ray, ray_address=ray_address, workers=workers, console=console)
    console.print(f"{result.written:,} pairs → {result.output} ({result.src_sentences:,} × {result.tgt_sentences:,} "
                  f"sentences, {result.choice.describe()}, {result.duplicates:,} duplicate pairs dropped, "
                  f"{result.seconds:.1f} s)")
