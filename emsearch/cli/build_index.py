"""`emsearch build-index`: encode a corpus into a sharded FAISS index with a sentence store (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emsearch.cli.app import app, console
from emsearch.errors import EmsearchError
from emsearch.index.build import BuildConfig, build_index, default_out
from emsearch.index.choice import format_bytes, parse_bytes


@app.command("build-index")
def build_index_command(
    input: Path = typer.Argument(..., help="Corpus: .parquet, .jsonl, .tsv (header line) or plain text (one sentence per line)."),
    name: Optional[str] = typer.Option(None, help="Index name: writes indexes/NAME (default: the input's file stem)."),
    out: Optional[Path] = typer.Option(None, help="Output directory, instead of indexes/NAME."),
    model: Optional[Path] = typer.Option(None, help="Model bundle directory; default: the model shipped with emsearch."),
    text_column: str = typer.Option(BuildConfig.text_column, help="Column (key) holding the sentence."),
    lang_column: str = typer.Option(BuildConfig.lang_column, help="Column (key) holding each row's language (ISO 639-1/3 or FLORES)."),
    id_column: Optional[str] = typer.Option(None, help="Column (key) of unique row ids; default: `id` where the input has it, else the row's position."),
    lang: Optional[str] = typer.Option(None, help="Language of every row (required for plain text; overrides --lang-column)."),
    index_factory: Optional[str] = typer.Option(None, help="FAISS factory string, e.g. 'OPQ64,IVF4096,PQ64'; default: chosen by corpus size and memory."),
    max_index_memory: str = typer.Option(format_bytes(BuildConfig.max_index_memory), help="Memory budget of the index at query time and of its training sample, e.g. 512M, 4G."),
    shard_size: int = typer.Option(BuildConfig.shard_size, help="Rows per embedding shard (a killed build resumes from its last encoded window of 4,096 rows)."),
    workers: int = typer.Option(BuildConfig.workers, help="Encoding processes (Ray actors with --ray; 0 = one per cluster GPU/CPU)."),
    ray: bool = typer.Option(False, "--ray", help="Encode and populate on Ray (a local instance, or RAY_ADDRESS / --ray-address)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join, e.g. 'auto' or 'ray://head:10001' (implies --ray)."),
    merge: bool = typer.Option(False, "--merge", help="Merge the IVF groups into one on-disk index, memory-mapped at query time."),
    centre: str = typer.Option(BuildConfig.centre, help="Centre vectors on: corpus (the corpus mean; for mining, whose thresholds assume it), language (each row's language's mean; for search across languages), or none."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an index of another input or model in the output directory."),
    batch_tokens: int = typer.Option(BuildConfig.batch_tokens, help="Tokens per encoding batch (padding included)."),
) -> None:
    """Build (or resume) a searchable index: sentence store, fp16 embedding shards, FAISS index."""
    if name is not None and out is not None:
        raise EmsearchError("give --name or --out, not both")
    target = out if out is not None else default_out(input, name)
    cfg = BuildConfig(
        input=str(input), out=str(target), model=str(model) if model else None, text_column=text_column,
        lang_column=lang_column, id_column=id_column, lang=lang, shard_size=shard_size, batch_tokens=batch_tokens,
        workers=workers, ray=ray or ray_address is not None, ray_address=ray_address, index_factory=index_factory,
        max_index_memory=parse_bytes(max_index_memory), merge=merge, centre=centre, overwrite=overwrite,
    )
    try:
        manifest = build_index(cfg, console=console)
    except KeyboardInterrupt:
        console.print(f"interrupted: {target} keeps every finished shard; rerun the same command to resume",
                      highlight=False)
        raise typer.Exit(130) from None
    counts, index = manifest.counts, manifest.index
    nprobe = f", nprobe {index.nprobe}" if index.nprobe else ""
    console.print(f"{counts.rows:,} rows in {len(counts.languages)} language(s) → {target} "
                  f"({index.params.factory}{nprobe}); see: emsearch info {target}")
