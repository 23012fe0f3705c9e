"""`emsearch serve`: the HTTP JSON API and search page over one index (`emsearch.server.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emsearch.cli.app import app, console
from emsearch.server import Limits, serve


@app.command("serve")
def serve_command(
    index: Optional[Path] = typer.Argument(None, help="Index directory; default: the only index under indexes/."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes the service to the network."),
    port: int = typer.Option(8080, help="TCP port (0 picks a free one)."),
    model: Optional[Path] = typer.Option(None, help="Model bundle; default: the model the index was built with."),
    max_k: int = typer.Option(Limits.max_k, help="Largest k a request may ask for."),
    max_texts: int = typer.Option(Limits.max_texts, help="Most queries in one request."),
    max_body: int = typer.Option(Limits.max_body, help="Largest request body, in bytes."),
    quiet: bool = typer.Option(False, "--quiet", help="Do not log each request."),
) -> None:
    """Serve POST /search, GET /health, GET /info and a search page at /."""
    serve(index, host=host, port=port, limits=Limits(max_body, max_k, max_texts), model=model, quiet=quiet,
          console=console)
