"""`emsearch verify`: is a built index whole? Every checksum, the sentence store, the FAISS vector count."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from emsearch.cli.app import app, console


@app.command("verify")
def verify_command(
    index: Path = typer.Argument(..., help="Index directory, or the name of one under indexes/."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as one JSON object."),
) -> None:
    """Check every file of an index against its manifest: exit 0 when whole, 1 when damaged (and say how to
    repair it)."""
    from emsearch.index.manifest import load_index, resolve_index
    from emsearch.index.verify import verify_index

    path = resolve_index(index)
    manifest = load_index(path, complete=True)
    verdict = verify_index(path, manifest)
    if as_json:
        typer.echo(json.dumps({"index": str(path), "whole": verdict.whole, "checked": verdict.checked,
                               "problems": verdict.problems}, ensure_ascii=False))
    elif verdict.whole:
        checked = ", ".join(f"{v:,} {k}" for k, v in verdict.checked.items())
        typer.echo(f"{path}: whole ({checked} checked)")
    else:
        for problem in verdict.problems:
            console.print(f"[bold red]damaged:[/] {problem}", highlight=False)
        console.print(f"repair: emsearch build-index {manifest.input.path} --out {path} (the same options as the "
                      "build; only what is damaged is redone)", highlight=False)
    if not verdict.whole:
        raise typer.Exit(1)
