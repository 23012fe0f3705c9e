"""`emsearch verify`: is a built index whole? Every file against the checksum recorded when it was written."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from emsearch.cli.app import app, console


@app.command("verify")
def verify_command(
    index: Path = typer.Argument(..., help="Index directory, or the name of one under indexes/."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as one JSON object."),
) -> None:
    """Check every file of an index against its manifest: exit 0 when whole, 1 when damaged (and say how to
    repair it)."""
    from emsearch.index.manifest import load_index, resolve_index
    from emsearch.index.verify import repair_command, verify_index

    path = resolve_index(index)
    manifest = load_index(path, complete=True)
    verdict = verify_index(path, manifest)
    if as_json:
        typer.echo(json.dumps({"index": str(path), "whole": verdict.whole, "checked": verdict.checked,
                               "problems": verdict.problems,
                               "repair": None if verdict.whole else repair_command(path, manifest)},
                              ensure_ascii=False))
    elif verdict.whole:
        typer.echo(f"{path}: whole ({verdict.checked['files']:,} files, {verdict.checked['bytes']:,} bytes checked)")
    else:
        for problem in verdict.problems:
            console.print(f"[bold red]damaged:[/] {escape(problem)}", highlight=False)
        console.print(f"repair: {repair_command(path, manifest)}  (only what is damaged is redone)", markup=False,
                      highlight=False)
    if not verdict.whole:
        raise typer.Exit(1)
