"""`emsearch` command line: one module per verb, each a thin layer over the Python API."""

from emsearch.cli import embed, train  # noqa: F401  (registers the commands)
from emsearch.cli.app import app, main

__all__ = ["app", "main"]
