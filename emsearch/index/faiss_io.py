"""Every FAISS file an index holds, read and written in one place: the build and `Index.open` both come here.

    indexes = load_faiss(path, manifest.index, embeddings)   # what a search runs over
    write_index(index, path / "faiss/group-0000.index")      # atomic: whole or absent

A flat index is not stored: it is rebuilt from the fp16 shards on opening. An IVF index is stored as groups
(one file each) or, after `merge_ondisk`, as one index whose inverted lists are memory-mapped from `.ivfdata`.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from emsearch.atomic import atomic_path, replace_dir, write_error
from emsearch.errors import EmsearchError

if TYPE_CHECKING:  # annotations only: this module sits below the shards and the manifest
    from emsearch.index.manifest import IndexRecord
    from emsearch.index.shards import ShardedEmbeddings


def load_faiss(path: Path, info: IndexRecord, embeddings: ShardedEmbeddings,
               groups: Sequence[int] | None = None) -> list[faiss.Index]:
    """The FAISS indexes to search: one flat index built from the shards, the merged on-disk IVF, or the groups
    (only those numbered in `groups`, where given: a mining worker holds one)."""
    if info.params.kind == "flat":
        flat = faiss.IndexFlatIP(embeddings.dim)  # positions are the global rows: no id map needed
        for _, block in embeddings.iter_blocks():
            flat.add(np.asarray(block, dtype=np.float32))
        return [flat]
    if info.merged:
        files = [(info.merged.file, faiss.IO_FLAG_ONDISK_SAME_DIR)]
    else:
        files = [(g.file, 0) for g in info.groups]
    if groups is not None:
        files = [files[g] for g in groups]
    indexes = []
    for name, flags in files:
        if not (path / name).is_file():
            raise EmsearchError(f"missing {name}; rerun emsearch build-index to repair it")
        with quiet_c_stdout():  # faiss announces where it found the on-disk lists
            index = faiss.read_index(str(path / name), flags)
        ivf = faiss.try_extract_index_ivf(index)
        quantizer = faiss.downcast_index(ivf.quantizer) if ivf is not None else None
        if isinstance(quantizer, faiss.IndexHNSW):
            quantizer.hnsw.efSearch = max(quantizer.hnsw.efSearch, 128)
        indexes.append(index)
    return indexes




@contextmanager
def quiet_c_stdout() -> Iterator[None]:
    """Silence what C code (faiss) prints on file descriptor 1 meanwhile: stdout stays the command's own."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers: flush into /dev/null before fd 1 comes back
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def populate(index: faiss.Index, blocks: Iterable[tuple[int, np.ndarray]]) -> faiss.Index:
    """Add (first row, vectors) blocks with their global row numbers as ids."""
    for start, block in blocks:
        x = np.ascontiguousarray(block, dtype=np.float32)
        index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))
    return index


def populate_serialized(trained: np.ndarray, blocks: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """`populate` on serialized indexes: what a Ray task runs."""
    return faiss.serialize_index(populate(faiss.deserialize_index(trained), blocks))




def merge_ondisk(root: Path, trained_file: str, group_files: Sequence[str], name: str = "merged") -> dict:
    """Merge the IVF groups into one index whose inverted lists live in `<name>.ivfdata`, memory-mapped when
    opened (faiss OnDiskInvertedLists). Built in a temporary directory and moved in: never half-present."""
    from faiss.contrib.ondisk import merge_ondisk as faiss_merge_ondisk

    faiss_dir = root / "faiss"
    index = faiss.read_index(str(root / trained_file))
    with replace_dir(faiss_dir, last=(f"{name}.index",)) as tmp:  # the index names its data: it goes in last
        with quiet_c_stdout(), _faiss_writing(faiss_dir / f"{name}.ivfdata"):  # faiss reports the resizing
            faiss_merge_ondisk(index, [str(root / f) for f in group_files], str(tmp / f"{name}.ivfdata"))
        # record where the data will live, so that opening it finds the name it expects (and says nothing)
        invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
        invlists.filename = str((faiss_dir / f"{name}.ivfdata").resolve())
        with _faiss_writing(faiss_dir / f"{name}.index"):
            faiss.write_index(index, str(tmp / f"{name}.index"))
        del index, invlists  # closes the ivfdata file
    return {"file": f"faiss/{name}.index", "data": f"faiss/{name}.ivfdata",
            "bytes": sum((faiss_dir / f"{name}{s}").stat().st_size for s in (".index", ".ivfdata"))}



def write_index(index: faiss.Index, path: Path) -> None:
    with atomic_path(path) as tmp, _faiss_writing(path):
        faiss.write_index(index, str(tmp))


@contextmanager
def _faiss_writing(path: Path) -> Iterator[None]:
    """faiss reports a failed write (a full disk) as a RuntimeError ending in "(strerror)": a WriteError for
    `path` instead."""
    try:
        yield
    except RuntimeError as e:
        found = re.search(r"\(([^()]+)\)\s*$", str(e))
        raise write_error(path, found.group(1) if found else " ".join(str(e).split())) from None
