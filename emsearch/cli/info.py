"""`emsearch info`: what an index holds (model, rows per language, shards, index type, sizes) without loading it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from emsearch.cli.app import app

CENTRED = {"corpus": "; vectors centred on the corpus mean", "language": "; vectors centred on their language's mean",
           "none": "; plain cosines"}


@app.command("info")
def info_command(
    index: Path = typer.Argument(..., help="Index directory, or the name of one under indexes/."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as one JSON object."),
) -> None:
    """Show what an index holds: model, dimension, rows per language, shards, index type and sizes."""
    from emsearch.index.manifest import index_facts

    facts = index_facts(index)
    if as_json:
        typer.echo(json.dumps(facts, ensure_ascii=False))
        return
    p = (facts["index"]["params"] or {})
    table = Table(show_header=False, box=None, pad_edge=False)
    status = "complete" if facts["complete"] else "[yellow]unfinished: rerun emsearch build-index to finish it[/]"
    model = facts["model"]
    rows = [
        ("index", f"{facts['path']} ({status})"),
        ("model", f"{model['id']} ({model['path'] or 'default model'}), dim {model['dim']}, max_len {model['max_len']}"),
        ("input", f"{facts['input']['path']} ({facts['input']['format']}, {facts['input']['bytes']:,} bytes)"),
        ("rows", f"{facts['counts']['rows']:,} (skipped empty: {facts['counts']['skipped_empty']:,}, "
                 f"truncated: {facts['counts']['truncated']:,})"),
        ("languages", ", ".join(f"{k} {v:,}" for k, v in facts["counts"]["languages"].items()) or "-"),
        ("shards", f"{facts['shards']} × ≤{facts['shard_size']:,} rows (fp16)"),
        ("faiss", f"{p.get('factory', '-')} in {facts['index']['groups'] or 1} group(s)"
                  f"{', merged on disk' if facts['index']['merged'] else ''}" if p else "-"),
        ("search", (f"nprobe {facts['index']['nprobe']}, re-rank {facts['index']['rerank']} candidates: recall@10 "
                    f"{facts['index']['recall_at_10']:.3f} at calibration" if facts["index"]["recall_at_10"]
                    else "exact" if p.get("kind") == "flat" else "not calibrated")
                   + CENTRED[facts["index"]["centring"]]
                   if p else "-"),
        ("disk", ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in facts["bytes"].items())
                 + f" ({facts['bytes_per_vector']} bytes/vector)"),
        ("seconds", ", ".join(f"{k} {v}" for k, v in facts["seconds"].items()) or "-"),
    ]
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", value)
    Console(soft_wrap=False).print(table, highlight=False)  # the answer goes to stdout
