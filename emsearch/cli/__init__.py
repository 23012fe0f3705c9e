"""`emsearch` command line: one module per verb, each a thin layer over the Python API."""

from emsearch.cli import (build_index, cache_teacher, embed, eval, info, mine, query, serve, train,  # noqa: F401
                          verify)  # (importing a verb registers its command)
from emsearch.cli.app import app, main

__all__ = ["app", "main"]
