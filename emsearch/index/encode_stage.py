"""Stage 2 of the build: per `shard_size` rows, the rows go to the LMDB store with the shard's mark (one
transaction); then, unless the shard's .npy is recorded in the manifest with a matching checksum, the rows are
encoded (windows of `window_rows`, by the runner), written, and recorded.

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
from emsearch.index.shards import Shard, shard_is_valid, write_shard
from emsearch.index.store import Store
from emsearch.progress import bar


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
    windows: deque[tuple[_Pending, Any]] = deque()

    def collect(progress) -> None:
        nonlocal manifest
        shard, future = windows.popleft()
        vectors, truncated = future.result()
        shard.parts.append(vectors)
        shard.truncated += truncated
        progress.advance(len(vectors))
        if sum(len(p) for p in shard.parts) == shard.rows:
            done[shard.index] = write_shard(out, shard.index, shard.start, np.concatenate(shard.parts),
                                            shard.truncated)
            manifest = replace(manifest, shards=_in_order(done))
            save(out, manifest)

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
                    windows.append((shard, runner.submit([r.text for r in rows[i : i + window_rows]])))
                    while len(windows) > 2 * runner.parallelism:
                        collect(progress)
            while windows:
                collect(progress)
    finally:
        runner.close()
        store.close()
    return replace(manifest, shards=_in_order(done))


def _in_order(done: dict[int, Shard]) -> tuple[Shard, ...]:
    return tuple(s for _, s in sorted(done.items()))
