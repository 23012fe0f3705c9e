"""`emsearch` command line: one module per verb, each a thin layer over the Python API."""

from emsearch.cli import (build_index, cache_teacher, embed, eval, export, info, mine, query, serve,  # noqa: F401
                          train, verify)  # (importing a verb registers its command)
from emsearch.cli.app import app, main

__all__ = ["app", "main"]
