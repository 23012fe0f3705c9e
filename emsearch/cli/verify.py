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
    from emsearch.index.verify import check_index

    report = check_index(index)
    verdict = report.verdict
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
    elif verdict.whole:
        typer.echo(f"{report.path}: whole ({verdict.checked['files']:,} files, {verdict.checked['bytes']:,} bytes "
                   "checked)")
    else:
        for problem in verdict.problems:
            console.print(f"[bold red]damaged:[/] {escape(problem)}", highlight=False)
        console.print(f"repair: {report.repair}  (only what is damaged is redone)", markup=False, highlight=False)
    if not verdict.whole:
        raise typer.Exit(1)
