"""Stage 2 of the build: per `shard_size` rows, the rows go to the LMDB store with the shard's mark (one
transaction); then, unless the shard's .npy is recorded in the manifest with a matching checksum, the rows are
encoded (windows of `window_rows`, by the runner), written, and recorded.

Each encoded window of a shard in progress is saved at once (`embeddings/windows/`, atomically) and the shard is
assembled from them, so a killed build loses at most the windows in flight, not a shard: a rerun reuses the
saved windows and encodes only the rest. Windows go away once their shard is written.

Memory: one shard of rows (texts + metadata) plus at most 2·parallelism windows of vectors in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from emsearch.corpus import Corpus, Row
from emsearch.index.manifest import Manifest, save
from emsearch.index.shards import EMBEDDINGS_DIR, Shard, save_fp16, shard_is_valid, write_shard
from emsearch.index.store import Store
from emsearch.progress import bar

WINDOWS_DIR = f"{EMBEDDINGS_DIR}/windows"


class _Saved:
    """A window encoded by an earlier run, answering like the runner's future."""

    def __init__(self, path: Path, truncated: int):
        self.path, self.truncated = path, truncated

    def result(self) -> tuple[np.ndarray, int]:
        return np.load(self.path, allow_pickle=False), self.truncated


def _window_files(out: Path, shard: int) -> list[Path]:
    return sorted((out / WINDOWS_DIR).glob(f"{shard:05d}.*.npy"))


def _saved_window(out: Path, shard: int, offset: int, rows: int) -> _Saved | None:
    """The window of `rows` rows at `offset` of `shard` if an earlier run saved it (name: shard.offset.rows.tN)."""
    for path in (out / WINDOWS_DIR).glob(f"{shard:05d}.{offset:07d}.{rows:05d}.t*.npy"):
        return _Saved(path, int(path.name.split(".")[3][1:]))
    return None


def _save_window(out: Path, shard: int, offset: int, vectors: np.ndarray, truncated: int) -> None:
    save_fp16(out / WINDOWS_DIR / f"{shard:05d}.{offset:07d}.{len(vectors):05d}.t{truncated}.npy", vectors)


def _shard_rows(rows: Iterator[Row], shard_size: int) -> Iterator[tuple[int, int, list[Row]]]:
    """(shard index, first global row, rows) in input order."""
    buf: list[Row] = []
    index = start = 0
    for row in rows:
        buf.append(row)
        if len(buf) == shard_size:
            yield index, start, buf
            index, start, buf = index + 1, start + shard_size, []
    if buf:
        yield index, start, buf


class _Pending:
    """A shard whose windows are being encoded."""

    def __init__(self, index: int, start: int, rows: int):
        self.index, self.start, self.rows = index, start, rows
        self.parts: list[np.ndarray] = []
        self.truncated = 0


def encode_shards(out: Path, corpus: Corpus, runner: Any, manifest: Manifest, *, shard_size: int,
                  window_rows: int, console: Console | None) -> Manifest:
    """Store and encode every shard not already done; returns the manifest with all shards recorded (each
    finished shard is saved as it completes, so a kill loses at most the shards in flight)."""
    done = {s.index: s for s in manifest.shards}
    store = Store.create(out / "store")
    windows: deque[tuple[_Pending, int, Any]] = deque()

    def collect(progress) -> None:
        nonlocal manifest
        shard, offset, future = windows.popleft()
        vectors, truncated = future.result()
        if isinstance(future, _Saved):
            progress.skip(len(vectors))
        else:
            _save_window(out, shard.index, offset, vectors, truncated)
            progress.advance(len(vectors))
        shard.parts.append(vectors)
        shard.truncated += truncated
        if sum(len(p) for p in shard.parts) == shard.rows:
            done[shard.index] = write_shard(out, shard.index, shard.start, np.concatenate(shard.parts),
                                            shard.truncated)
            manifest = replace(manifest, shards=_in_order(done))
            save(out, manifest)
            for path in _window_files(out, shard.index):
                path.unlink()

    try:
        with bar(console, "encoding", manifest.counts.rows) as progress:
            for index, start, rows in _shard_rows(corpus.rows(), shard_size):
                mark = f"shard:{index}"
                if not store.has_mark(mark):
                    store.put_shard(mark, start, [r.id for r in rows], [r.lang for r in rows],
                                    [r.text for r in rows], [r.meta for r in rows])
                old = done.get(index)
                if old is not None and (old.start, old.stop) == (start, start + len(rows)) and \
                        shard_is_valid(out, old):
                    progress.skip(len(rows))
                    continue
                done.pop(index, None)
                shard = _Pending(index, start, len(rows))
                for i in range(0, len(rows), window_rows):
                    window = rows[i : i + window_rows]
                    saved = _saved_window(out, index, i, len(window))
                    windows.append((shard, i, saved or runner.submit([r.text for r in window])))
                    while len(windows) > 2 * runner.parallelism:
                        collect(progress)
            while windows:
                collect(progress)
        if (out / WINDOWS_DIR).is_dir() and not any((out / WINDOWS_DIR).iterdir()):
            (out / WINDOWS_DIR).rmdir()
    finally:
        runner.close()
        store.close()
    return replace(manifest, shards=_in_order(done))


def _in_order(done: dict[int, Shard]) -> tuple[Shard, ...]:
    return tuple(s for _, s in sorted(done.items()))
