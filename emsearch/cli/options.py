"""What the query-side commands (query, mine, serve) share: finding the index to use and opening it."""

from __future__ import annotations

from pathlib import Path

from emsearch.shards import MANIFEST

INDEX_HOME = Path("indexes")  # where `emsearch build-index --name NAME` puts indexes


def resolve_index(path: Path | None, home: Path = INDEX_HOME) -> Path:
    """`path` if given; else the only index under `home`; else a one-line error asking for --index."""
    if path is not None:
        return path
    found = sorted(p for p in home.iterdir() if (p / MANIFEST).is_file()) if home.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"no index under {home}/: build one with `emsearch build-index CORPUS --name NAME`, "
                         "or give --index PATH")
    raise ValueError(f"{len(found)} indexes under {home}/ ({', '.join(p.name for p in found)}): "
                     "choose one with --index PATH")


def open_index(path: Path | None, model: Path | None = None):
    """Open the index named by `path` (or the only one), with `model` or the model it was built with."""
    from emsearch.index import Index

    return Index.open(resolve_index(path), model=model)
