"""`emsearch` command line: one module per verb, each a thin layer over the Python API."""

from emsearch.cli import build_index, embed, eval, info, mine, query, serve, train, verify  # noqa: F401  (registers the commands)
from emsearch.cli.app import app, main

__all__ = ["app", "main"]
