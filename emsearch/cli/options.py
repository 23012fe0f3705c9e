"""What the query-side commands (query, mine, serve) share: opening the index they are pointed at."""

from __future__ import annotations

from pathlib import Path


def open_index(path: Path | None, model: Path | None = None):
    """Open the index at `path`, or the one of that name under indexes/, or the only one there; with `model` or
    the model it was built with."""
    from emsearch.index.manifest import resolve_index
    from emsearch.index.reader import Index

    return Index.open(resolve_index(path), model=model)
