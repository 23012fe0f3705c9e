"""Files that appear whole or not at all: write under a temporary name, fsync, rename over the target.

    with atomic_path(out / "pairs.parquet") as tmp:
        pq.write_table(table, tmp)          # a crash here leaves the old file (or none), never a part
    write_text_atomic(out / "manifest.json", text)
    save_npy(out / "vectors.npy", x)

`replace_dir` does the same for a directory of files built in a temporary directory beside the target.

A write that fails (a full disk, an I/O error) is a `WriteError`: one line naming the file and what to do, never
a bare `[Errno 28]` that names no file. The target keeps its old content (or stays absent), so rerunning the
command after freeing space resumes from a consistent state.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emsearch.errors import EmsearchError


class WriteError(EmsearchError):
    """A file could not be written (disk full, I/O error, no permission)."""


def write_error(path: str | Path, cause: OSError | str) -> WriteError:
    """The one-line error for a failed write of `path`; `cause` is the OSError, or a library's message for one."""
    if isinstance(cause, OSError):
        reason, full = cause.strerror or str(cause), cause.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        reason, full = cause, "No space left" in cause or "Disk quota" in cause
    advice = "free some space on its disk" if full else "check the disk and its permissions"
    return WriteError(f"cannot write {path} ({reason}); {advice}, then rerun the same command (what was "
                      "finished is kept)")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` (after fsync) when the block succeeds,
    removed when it fails. `suffix` keeps an extension some writers insist on (np.save appends `.npy`)."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """`array` as a .npy at `path`, whole or absent; never pickled (an object array is refused)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
        np.save(f, array, allow_pickle=False)


@contextmanager
def replace_dir(path: str | Path, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """A fresh temporary directory beside `path` to fill; when the block succeeds its files are fsynced and
    each is renamed into `path` (created if missing), so every file there is whole; the files named in `last`
    (one that points to the others) go last. The temporary directory is removed when the block fails."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        path.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: (f.name in last, f.name)):
            _fsync(f)
            os.replace(f, path / f.name)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_dir(tmp: str | Path, path: str | Path) -> None:
    """Put the filled directory `tmp` in place of `path` as a whole (the old one is moved aside, then removed):
    unlike `replace_dir`, no moment shows new files beside old ones, which matters when they only fit together
    (a checkpoint's tensors and its JSON, a bundle's weights and its model id)."""
    tmp, path = Path(tmp), Path(path)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read 4 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_matches(path: str | Path, sha256: str | None) -> bool:
    """Whether `path` is a file whose SHA-256 is `sha256` (False for None: nothing recorded to compare with)."""
    path = Path(path)
    return sha256 is not None and path.is_file() and file_sha256(path) == sha256
