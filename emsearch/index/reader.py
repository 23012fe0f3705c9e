"""`Index.open(path)`: search a built index (FAISS shards + fp16 embeddings + LMDB sentence store).

    from emsearch.index.reader import Index
    with Index.open("indexes/news") as index:
        for hit in index.search(["Guten Morgen"], k=5, langs=["eng"])[0]:
            print(hit.rank, f"{hit.score:.3f}", hit.lang, hit.text)

Global rows are 0..ntotal-1 in input order (empty texts skipped). Scores are cosines between vectors centred on
the corpus mean (`ShardedEmbeddings.centred`; plain cosines in an index built without centring). In an index
centred per language (`--centre language`) each row is centred on its own language's mean, and a query on the
mean of the language it is written in (`search(.., lang="deu")`; the corpus mean when not given). Every
approximate index (IVF-PQ) returns its `rerank` best candidates re-scored exactly against the stored fp16
vectors, so the scores are exact cosines and only membership in the top k is approximate. A language
restriction small enough to scan (≤ EXACT_SUBSET_ROWS rows) is searched exactly; a larger one through a FAISS ID
selector.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from emsearch.encoder import Encoder, ModelLoadError
from emsearch.errors import EmsearchError
from emsearch.languages import normalize_lang
from emsearch.index.exact import exact_knn
from emsearch.index.faiss_io import load_faiss
from emsearch.index.ivf import merge_results, rescore, search_faiss
from emsearch.index.manifest import IndexRecord, Manifest, ManifestError, facts, load_index, resolve_index
from emsearch.index.manifest import centring as centring_of
from emsearch.index.shards import LanguageCentres, ShardedEmbeddings
from emsearch.index.store import Record, Store
from emsearch.index.verify import repair_command, verify_index

__all__ = ["Hit", "Index", "IndexOpenError", "Record"]

EXACT_SUBSET_ROWS = 32_768  # a language restriction this small is scanned exactly
RESTRICTIONS_KEPT = 8  # language restrictions (rows, and vectors or selector) cached between queries


class IndexOpenError(EmsearchError):
    """A missing, corrupt or unfinished index directory, or one built with another model."""


@dataclass(frozen=True)
class Hit:
    """One search result: rank from 1, cosine score, and the stored sentence."""

    rank: int
    score: float
    row: int
    id: str
    lang: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


class Index:
    """An opened index. Use `Index.open`; close it (or use `with`) to release the store and memory maps."""

    def __init__(self, path: Path, manifest: Manifest, encoder: Encoder, embeddings: ShardedEmbeddings,
                 store: Store, faiss_indexes: list[faiss.Index]):
        self.path = path
        self.manifest = manifest
        self.encoder = encoder
        self.dim: int = manifest.model.dim
        self.ntotal: int = manifest.counts.rows
        self.model_id: str = manifest.model.id
        self._emb = embeddings
        self._store = store
        self._faiss = faiss_indexes
        self._info: IndexRecord = manifest.index
        self._params = manifest.index.params
        self._restrictions: OrderedDict[tuple[str, ...], _Restriction] = OrderedDict()

    @classmethod
    def open(cls, path: str | Path | None = None, encoder: Encoder | None = None, *,
             model: str | Path | None = None, groups: Sequence[int] | None = None) -> Index:
        """Open the index in `path` (or the one of that name under indexes/, or with None the only one there),
        checking it is complete, that every file is the one the build recorded (`verify_index`: each file is
        hashed once, then trusted while its stamp holds), and that `encoder` is the model it was built with.

        With no encoder, loads `model`, else the model path recorded at build time if it still exists, else the
        default model. `groups` loads only those FAISS groups (`group_candidates`: a mining worker holds one).
        """
        path = resolve_index(path)
        try:
            manifest = load_index(path, complete=True)
        except ManifestError as e:
            raise IndexOpenError(str(e)) from None
        verdict = verify_index(path, manifest, copies=False, trust_stamp=True)  # damage is never read as data
        if not verdict.whole:
            more = f" (and {len(verdict.problems) - 1} more)" if len(verdict.problems) > 1 else ""
            raise IndexOpenError(f"{verdict.problems[0]}{more}; repair it with: {repair_command(path, manifest)}")
        built = manifest.model
        if encoder is None:
            recorded = built.path
            source = model if model is not None else (recorded if recorded and Path(recorded).is_dir() else None)
            try:
                encoder = Encoder.load(source)
            except ModelLoadError as e:
                raise IndexOpenError(f"cannot load a model for {path} ({e}); pass the model it was built with, "
                                     f"id {built.id}") from None
        if encoder.model_id != built.id:
            raise IndexOpenError(f"{path} was built with model {built.id}, not {encoder.model_id}: search it "
                                 "with the same model, or rebuild the index with this one")
        store = None
        try:
            store = Store.open(path / "store")
            means = manifest.index.language_centres
            by_lang = None if means is None else LanguageCentres.recorded(means, store.rows_of_lang,
                                                                          manifest.counts.rows)
            embeddings = ShardedEmbeddings(path, manifest.shards, built.dim, centre=manifest.index.centre,
                                           by_lang=by_lang)
            indexes = load_faiss(path, manifest.index, embeddings, groups)
        except (EmsearchError, RuntimeError) as e:  # RuntimeError: faiss could not read a file
            if store is not None:
                store.close()
            raise IndexOpenError(f"{path}: {e}") from None
        return cls(path, manifest, encoder, embeddings, store, indexes)

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()
        self._faiss = []
        self._restrictions.clear()

    def languages(self) -> dict[str, int]:
        """Rows per language (canonical ISO 639-3 code)."""
        return dict(self.manifest.counts.languages)

    def facts(self) -> dict[str, Any]:
        """What `emsearch info` shows: the manifest's key facts plus the sizes on disk."""
        return facts(self.path, self.manifest)

    def rows_of_lang(self, lang: str) -> np.ndarray:
        """Sorted global rows (int64) of one language; a language the index lacks is a ValueError."""
        code = normalize_lang(lang)
        rows = self._store.rows_of_lang(code)
        if rows is None:
            raise EmsearchError(f"the index has no rows in language {lang!r} ({code}); it holds "
                             f"{', '.join(self.languages())}")
        return rows

    def row_of_id(self, id_: str) -> int | None:
        """The global row of a corpus id, or None."""
        return self._store.row_of_id(id_)

    @property
    def centred(self) -> bool:
        """Whether the index compares centred vectors (indexes built before centring, or with `--centre none`,
        do not)."""
        return self._emb.centre is not None

    @property
    def centring(self) -> str:
        """What the index centres on: "corpus", "language" or "none" (the build's `--centre`)."""
        return centring_of(self._info)

    def embeddings(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of `rows` as the index compares them (float32 (len(rows), dim)): the stored fp16 vectors,
        centred on the corpus mean (or, centred per language, each on its own language's mean)."""
        return self._emb.take(rows)

    def vectors_of(self, model_vectors: np.ndarray, lang: str | None = None) -> np.ndarray:
        """The model's sentence vectors (`Encoder.encode`) of texts written in `lang` (any accepted code; None:
        unknown or mixed) as this index compares them: what `search_vectors` takes. Only an index centred per
        language uses `lang`: it centres them on that language's mean (the corpus mean for a language the index
        has no rows in)."""
        return self._emb.centred(model_vectors, lang=None if lang is None else normalize_lang(lang))

    def records(self, rows: Sequence[int]) -> list[Record]:
        return self._store.get([int(r) for r in rows])

    @property
    def groups(self) -> int:
        """FAISS files the index is searched through (groups of shards; one when merged or exact)."""
        info = self._info
        return len(info.groups) if info.params.kind != "flat" and info.merged is None else 1

    def scans_exactly(self, langs: Sequence[str] | None = None) -> bool:
        """Whether `search_vectors` answers these languages without FAISS: an exact index, or a restriction small
        enough to scan."""
        restriction = self._restriction(langs)
        return self._params.kind == "flat" or (restriction is not None and restriction.vectors is not None)

    def group_candidates(self, xq: np.ndarray, k: int, *, langs: Sequence[str] | None = None,
                         nprobe: int | None = None, rerank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The FAISS part of `search_vectors` over the groups this index was opened with (`open(groups=...)`):
        approximate scores and global rows of the candidates, which `search_vectors(candidates=...)` merges (every
        group's, in group order) and re-scores as it does its own."""
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        restriction = self._restriction(langs)
        params = self._search_params(restriction.selector if restriction is not None else None, nprobe)
        return search_faiss(self._faiss, xq, self._candidates(k, rerank), params)

    def _candidates(self, k: int, rerank: int | None) -> int:
        """FAISS candidates per query: k for an exact index, else the re-ranking depth."""
        return k if self._params.kind == "flat" else max(k, rerank or self._info.rerank or self._params.rerank)

    def search_vectors(self, xq: np.ndarray, k: int, *, langs: Sequence[str] | None = None,
                       nprobe: int | None = None, rerank: int | None = None,
                       candidates: Iterable[tuple[np.ndarray, np.ndarray]] | None = None,
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over all shards: D (n, k) float32 cosines, I (n, k) int64 global rows; -1 (score -inf) = none.

        `xq` are vectors as an index compares them: this index's `vectors_of(encoded texts)`, or rows of an index's
        `embeddings` (mining searches one index's rows in another, each centred on its own corpus, or per language
        on its own language's mean).

        `nprobe` (IVF lists visited) and `rerank` (candidates re-scored exactly) default to the values
        calibrated at build time; an exact (flat) index ignores both. `candidates`: every group's
        `group_candidates` for `xq`, in group order, searched elsewhere (`mine --ray`); the answer is the same.
        """
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if xq.ndim != 2 or xq.shape[1] != self.dim:
            raise EmsearchError(f"query vectors must have shape (n, {self.dim}); got {xq.shape}")
        if k < 1:
            raise EmsearchError(f"k must be at least 1, got {k}")
        for name, value in (("nprobe", nprobe), ("rerank", rerank)):
            if value is not None and value < 1:
                raise EmsearchError(f"{name} must be at least 1, got {value}")
        if len(xq) == 0:
            return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)
        exact = self._params.kind == "flat"
        restriction = self._restriction(langs)
        if restriction is not None and restriction.vectors is not None:
            D, J = exact_knn(xq, restriction.vectors, k)  # J: a position in restriction.rows
            return _finish(D, np.where(J >= 0, restriction.rows[np.maximum(J, 0)], -1))
        selector = restriction.selector if restriction is not None else None
        kk = self._candidates(k, rerank)
        if candidates is None:
            D, I = search_faiss(self._faiss, xq, kk, self._search_params(selector, nprobe))
        else:
            D, I = merge_results(candidates, len(xq), kk)
        if not exact:
            D, I = rescore(xq, I, k, self._emb)
        return _finish(D[:, :k], I[:, :k])

    def search(self, texts: Sequence[str], k: int = 10, *, langs: Sequence[str] | None = None,
               nprobe: int | None = None, lang: str | None = None) -> list[list[Hit]]:
        """Encode `texts` (written in `lang`, when known: see `vectors_of`) and return, for each, its hits best
        first; `langs` keeps only hits in those languages."""
        if isinstance(texts, str):
            raise TypeError("search takes a list of queries; wrap a single query in a list")
        xq = self.vectors_of(self.encoder.encode(list(texts)), lang)
        D, I = self.search_vectors(xq, k, langs=langs, nprobe=nprobe)
        found = np.unique(I[I >= 0])
        by_row = dict(zip(found.tolist(), self.records(found)))
        return [[Hit(rank, float(d), int(i), by_row[i].id, by_row[i].lang, by_row[i].text, by_row[i].meta)
                 for rank, (d, i) in enumerate(zip(Dq, Iq), 1) if i >= 0] for Dq, Iq in zip(D, I)]

    def _restriction(self, langs: Sequence[str] | None) -> _Restriction | None:
        """How to search only `langs` (None: no restriction), cached for the next queries."""
        if langs is None:
            return None
        key = tuple(sorted({normalize_lang(lang) for lang in ([langs] if isinstance(langs, str) else langs)}))
        if not key:
            raise EmsearchError("langs is empty: give at least one language, or None for all")
        if key in self._restrictions:
            self._restrictions.move_to_end(key)
            return self._restrictions[key]
        rows = np.unique(np.concatenate([self.rows_of_lang(c) for c in key]))
        if len(rows) == self.ntotal:
            return None  # every language: no restriction
        # a small restriction is scanned exactly with BLAS (for a flat index, any restriction up to 8× as large:
        # the ID-selector path of IndexFlat scans without BLAS, and a flat index holds all vectors in memory anyway)
        small = len(rows) <= EXACT_SUBSET_ROWS * (8 if self._params.kind == "flat" else 1)
        restriction = _Restriction(rows, self.ntotal, vectors=self._emb.take(rows) if small else None)
        self._restrictions[key] = restriction
        if len(self._restrictions) > RESTRICTIONS_KEPT:
            self._restrictions.popitem(last=False)
        return restriction

    def _search_params(self, selector: Any, nprobe: int | None) -> faiss.SearchParameters | None:
        if self._params.kind == "ivf":
            default = self._info.nprobe or 1
            p = faiss.SearchParametersIVF(nprobe=int(min(nprobe or default, self._params.nlist)))
        elif selector is not None:
            p = faiss.SearchParameters()
        else:
            return None
        if selector is not None:
            p.sel = selector
        return p


class _Restriction:
    """The rows of some languages, and how to search them: exactly over `vectors` when few, else through FAISS with
    `selector` (made on first use: one group's FAISS candidates, `group_candidates`, are restricted even where few)."""

    def __init__(self, rows: np.ndarray, ntotal: int, vectors: np.ndarray | None = None):
        self.rows, self.ntotal, self.vectors = rows, ntotal, vectors
        self._bitmap = None  # the selector reads it: it must live as long as the selector
        self._selector = None

    @property
    def selector(self) -> Any:
        if self._selector is None:
            bits = np.zeros(self.ntotal, dtype=bool)
            bits[self.rows] = True
            self._bitmap = np.packbits(bits, bitorder="little")
            self._selector = faiss.IDSelectorBitmap(self.ntotal, faiss.swig_ptr(self._bitmap))
        return self._selector


def _finish(D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row ids as int64 and scores as cosines: unit vectors stored in fp16 can score a hair above 1, clipped."""
    I = np.ascontiguousarray(I, dtype=np.int64)
    D = np.clip(np.ascontiguousarray(D, dtype=np.float32), -1.0, 1.0)
    D[I < 0] = -np.inf
    return D, I
