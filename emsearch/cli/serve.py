"""`emsearch serve`: the HTTP JSON API and search page over one index (see emsearch.server)."""

from __future__ import annotations

import errno
import ipaddress
from pathlib import Path
from typing import Optional

import typer

from emsearch.errors import EmsearchError
from emsearch.cli.app import app, console
from emsearch.cli.options import open_index
from emsearch.server import Limits, SearchService, make_server


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
    if not 1 <= max_k <= 10_000 or max_texts < 1 or max_body < 1024:
        raise EmsearchError("limits: --max-k from 1 to 10000, --max-texts at least 1, --max-body at least 1024")
    if not 0 <= port <= 65535:
        raise EmsearchError(f"--port {port}: give a port from 0 to 65535")
    with open_index(index, model) as idx:
        try:
            server = make_server(SearchService(idx, Limits(max_body, max_k, max_texts)), host, port, quiet=quiet)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise EmsearchError(f"port {port} on {host} is already in use (another emsearch serve?); "
                                    f"pick another with --port, or --port 0 for a free one") from None
            raise EmsearchError(f"cannot listen on --host {host} ({e.strerror or e}): give an address of this "
                                "machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every network)") from None
        bound_host, bound_port = server.server_address[:2]
        if not ipaddress.ip_address(bound_host).is_loopback:
            console.print(f"[yellow]warning:[/] listening on {bound_host}: anyone who can reach this machine can "
                          "query the index (there is no authentication); --host 127.0.0.1 keeps it local",
                          highlight=False)
        console.print(f"serving {idx.path} ({idx.ntotal:,} sentences, {len(idx.languages())} language(s)) "
                      f"on http://{bound_host}:{bound_port}/ — Ctrl-C stops", soft_wrap=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
