"""Every FAISS file an index holds, read and written in one place: the build and `Index.open` both come here.

    indexes = load_faiss(path, manifest.index, embeddings)   # what a search runs over
    write_index(index, path / "faiss/group-0000.index")      # atomic: whole or absent

A flat index is not stored: it is rebuilt from the fp16 shards on opening. An IVF index is stored as groups
(one file each) or, after `merge_ondisk`, as one index whose inverted lists are memory-mapped from `.ivfdata`.
Groups are opened as `IVFGroups`: clones of one trained index, searched with one coarse assignment
(`ivf.group_results`).
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

COARSE_EF_SEARCH = 128  # an HNSW coarse quantizer's search breadth, when adding vectors as when searching

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
        coarse_search_breadth(index)  # indexes built before the breadth was saved with them
        indexes.append(index)
    return shared_coarse(indexes)  # the groups of one build: one coarse assignment per query, not one per group




class IVFGroups(list):
    """The IVF groups of one build: clones of one trained index, so one rotation and one coarse quantizer.

    A query is rotated and assigned to its lists once (`coarse_assign`), then each group scans those lists
    (`search_preassigned`): searching G groups costs one coarse step, not G. Made by `shared_coarse`."""

    def __init__(self, indexes: Sequence[faiss.Index], chain: list, quantizer: faiss.Index):
        super().__init__(indexes)
        self.chain, self.quantizer = chain, quantizer
        self.ivfs = [faiss.extract_index_ivf(index) for index in indexes]


def _coarse_parts(index: faiss.Index) -> tuple[list, faiss.Index] | None:
    """(the vector transforms before the IVF index, its coarse quantizer), or None for another kind of index."""
    index = faiss.downcast_index(index)
    chain = []
    if isinstance(index, faiss.IndexPreTransform):
        chain = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
        index = faiss.downcast_index(index.index)
    if not isinstance(index, faiss.IndexIVF):
        return None
    return chain, faiss.downcast_index(index.quantizer)


def _transform_state(vt) -> list[np.ndarray]:
    """What a trained transform applies (a linear one's matrix and bias), to compare two of them."""
    if not isinstance(vt, faiss.LinearTransform):
        return [np.array([id(vt)])]  # only linear transforms (OPQ, random rotation, PCA) are compared
    return [faiss.vector_to_array(vt.A), faiss.vector_to_array(vt.b)]


def shared_coarse(indexes: Sequence[faiss.Index]) -> Sequence[faiss.Index]:
    """`indexes` as `IVFGroups` when they are IVF indexes with the same transforms and coarse centroids (the
    groups of one build), else unchanged."""
    if len(indexes) < 2:
        return indexes
    parts = [_coarse_parts(index) for index in indexes]
    if any(p is None for p in parts):
        return indexes
    chain, quantizer = parts[0]
    centroids = quantizer.reconstruct_n(0, quantizer.ntotal)
    state = [a for vt in chain for a in _transform_state(vt)]
    for other_chain, other_q in parts[1:]:
        other_state = [a for vt in other_chain for a in _transform_state(vt)]
        if len(other_state) != len(state) or other_q.ntotal != quantizer.ntotal or \
                any(not np.array_equal(a, b) for a, b in zip(state, other_state)) or \
                not np.array_equal(other_q.reconstruct_n(0, other_q.ntotal), centroids):
            return indexes
    return IVFGroups(indexes, chain, quantizer)


def coarse_assign(groups: IVFGroups, xq: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The queries as the IVF indexes compare them (transformed), their nprobe lists and the lists' scores."""
    xt = xq
    for vt in groups.chain:
        xt = vt.apply(xt)
    xt = np.ascontiguousarray(xt, dtype=np.float32)
    Dq, Iq = groups.quantizer.search(xt, nprobe)
    return xt, np.ascontiguousarray(Dq, dtype=np.float32), np.ascontiguousarray(Iq, dtype=np.int64)


def coarse_search_breadth(index: faiss.Index) -> None:
    """Give an HNSW coarse quantizer the breadth COARSE_EF_SEARCH (faiss's default is 16), saved with the index.

    Adding files each vector in the list its quantizer finds: at the default breadth, on 10M vectors in 16,384
    lists, 44% went to a list that is not their nearest, where their PQ codes (of a residual too large) keep them
    out of any query's re-ranked candidates: recall@10 stopped at 0.83 however many lists were probed. At 128,
    94% find their nearest list."""
    ivf = faiss.try_extract_index_ivf(index)
    quantizer = faiss.downcast_index(ivf.quantizer) if ivf is not None else None
    if isinstance(quantizer, faiss.IndexHNSW):
        quantizer.hnsw.efSearch = max(quantizer.hnsw.efSearch, COARSE_EF_SEARCH)


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
