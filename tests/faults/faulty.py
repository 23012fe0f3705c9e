"""What the fault suites share: ways to damage a file, a failing write at a chosen point, the CLI run in-process,
and a fingerprint of an index's answers to compare a repaired index with a clean build.

The suites build and rebuild many tiny indexes: `one_thread` (imported into each suite, autouse) runs FAISS and
torch on one thread there, where their threads would mostly wait for each other (tens of times slower on a busy
machine); the same thread count also gives the clean and the repaired builds bit-identical files.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import faiss
import lmdb
import pytest

from emsearch.index import Index


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads[0])
    torch.set_num_threads(threads[1])


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip(at: str, size: int = 16) -> Callable[[Path], None]:
    """XOR `size` bytes (all of them, or the file's) at its start, middle or end."""

    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        n = min(size, len(data))
        start = {"start": 0, "middle": (len(data) - n) // 2, "end": len(data) - n}[at]
        data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
        path.write_bytes(bytes(data))

    return damage


def delete(path: Path) -> None:
    path.unlink()


DAMAGES = {"truncated": truncate, "start flipped": flip("start"), "middle flipped": flip("middle"),
           "end flipped": flip("end"), "a 4 KiB page flipped": flip("middle", 4096), "deleted": delete}


class Killed(BaseException):
    """What a SIGKILL is to the code that runs: nothing handles it (a BaseException, like KeyboardInterrupt)."""


class Faults:
    """Counts the build's writes and fails the `at`-th one (from 0) with `fault`: an errno (the OSError, or the
    message a library gives for it) or `Killed`. Write points: every atomic file write (its fsync), every LMDB
    write transaction, every FAISS file write."""

    def __init__(self, monkeypatch, at: int | None = None, fault: int | type[Killed] = errno.ENOSPC):
        import emsearch.atomic as atomic
        from emsearch.index.store import Store

        self.at, self.fault, self.count, self.fired = at, fault, 0, None
        self.log: list[str] = []  # every write point passed, by name
        fsync, write_index, create = atomic._fsync, faiss.write_index, Store.create

        def failing_fsync(path):
            self.point(f"fsync {Path(path).name}", lambda reason: OSError(self.fault, reason))
            fsync(path)

        def failing_write_index(index, name, *args):
            self.point(f"faiss {Path(name).name}", lambda reason: RuntimeError(
                f"Error in faiss::FileIOWriter: write error in {name}: 0 != 99 ({reason})"))
            write_index(index, name, *args)

        def failing_create(path, *args, **kwargs):
            store = create(path, *args, **kwargs)
            store.env = _FailingEnv(store.env, self)
            return store

        monkeypatch.setattr(atomic, "_fsync", failing_fsync)
        monkeypatch.setattr(faiss, "write_index", failing_write_index)
        monkeypatch.setattr(Store, "create", failing_create)

    def point(self, what: str, error: Callable[[str], Exception]) -> None:
        """One write; the failing one raises `error(strerror)` (or `Killed`)."""
        self.log.append(what)
        self.count += 1
        if self.count - 1 == self.at:
            self.fired = what
            raise Killed(what) if self.fault is Killed else error(os.strerror(self.fault))


class _FailingEnv:
    """An LMDB environment whose write transactions are points of `faults` (failing as a commit does)."""

    def __init__(self, env: lmdb.Environment, faults: Faults):
        self._env, self._faults = env, faults

    def begin(self, write: bool = False, **kwargs):
        txn = self._env.begin(write=write, **kwargs)
        if write:
            try:
                self._faults.point("store/data.mdb", lambda reason: lmdb.Error(f"mdb_txn_commit: {reason}"))
            except BaseException:
                txn.abort()
                raise
        return txn

    def __getattr__(self, name):
        return getattr(self._env, name)


def one_line_error(code: int, err: str) -> str:
    """The one `error:` line of a failed command (exit 2), never a traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def answers(path: Path, queries: list[str], encoder=None) -> list:
    """Every hit (id, score) of each query, with and without a language restriction: equal fingerprints mean an
    index answers exactly like another."""
    with Index.open(path, encoder) as index:
        hits = index.search(queries, k=8) + index.search(queries, k=8, langs=["eng"])
        return [[(h.id, h.score, h.text) for h in found] for found in hits]


def count_encoded(monkeypatch) -> list[int]:
    """Rows encoded from now on (each window's length), however the build runs its windows in-process."""
    import emsearch.index.runners as runners

    encoded: list[int] = []
    encode_window = runners.encode_window

    def counting(encoder, window, batch_tokens):
        encoded.append(len(window))
        return encode_window(encoder, window, batch_tokens)

    monkeypatch.setattr(runners, "encode_window", counting)
    return encoded

