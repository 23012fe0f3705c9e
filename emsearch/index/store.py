"""The sentence store: LMDB, row → (id, language, text, metadata); id → row; language → rows.

Sub-databases of `<index>/store/`:
    records  row (8-byte big-endian) → UTF-8 JSON {"id", "lang", "text", "meta"}   (no pickle, ever)
    ids      corpus id (UTF-8)       → row                                           (duplicate-id check, lookup)
    bylang   lang + NUL + row         → ""                                           (written while building)
    langs    lang                     → the language's rows as little-endian int64    (written by `finalize`)
    marks    "shard:<i>"              → ""                                           (shard i's rows are stored)

A shard's records and its mark are committed in one transaction, so a rerun after a crash knows exactly which
shards are already stored. Queries open the store read-only.
"""

from __future__ import annotations

import json
from itertools import takewhile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import numpy as np

from emsearch.atomic import write_error
from emsearch.errors import EmsearchError

T = TypeVar("T")
DATA_FILE = "data.mdb"  # the store's one data file (LMDB's lock file is not kept: readers open without it)
MAX_ID_BYTES = 480  # LMDB keys are limited to 511 bytes


class DuplicateIdError(EmsearchError):
    """The same corpus id on two rows."""


class StoreDamagedError(EmsearchError):
    """A store file that cannot be read safely (truncated or not LMDB)."""


def _truncation(env: lmdb.Environment, data: Path) -> str | None:
    """Why the data file cannot be read safely, or None: a file shorter than the pages its last commit uses is the
    danger, as reading past its end through LMDB's memory map kills the process (SIGBUS) instead of raising."""
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    have = data.stat().st_size
    return None if have >= need else f"{data}: truncated ({have:,} bytes; its last commit needs {need:,})"


@dataclass(frozen=True)
class Record:
    """One stored sentence: its global row, corpus id, ISO 639-3 language, text and extra columns."""

    row: int
    id: str
    lang: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


def _row_key(row: int) -> bytes:
    return int(row).to_bytes(8, "big")


# LMDB allows one environment per file per process: read-only opens of the same store share it, counted.
_READERS: dict[Path, tuple[lmdb.Environment, int]] = {}


class Store:
    """Open with `Store.create(path)` to write (building) or `Store.open(path)` to read (queries)."""

    def __init__(self, env: lmdb.Environment, readonly: bool):
        self.env = env
        self.readonly = readonly
        self.closed = False
        self.db = {name: env.open_db(name.encode(), create=not readonly)
                   for name in ("records", "ids", "bylang", "langs", "marks")}

    @classmethod
    def create(cls, path: str | Path, map_size: int = 1 << 28) -> Store:
        """Open for writing, creating the store if needed; the map grows by doubling when it fills."""
        Path(path).mkdir(parents=True, exist_ok=True)
        try:
            return cls(lmdb.open(str(path), map_size=map_size, max_dbs=8, subdir=True), readonly=False)
        except lmdb.Error as e:
            raise write_error(Path(path) / DATA_FILE, str(e)) from None

    @classmethod
    def open(cls, path: str | Path) -> Store:
        path = Path(path)
        if not (path / DATA_FILE).is_file():
            raise EmsearchError(f"{path}: no sentence store; rerun emsearch build-index")
        key = path.resolve()
        try:
            env, users = _READERS.get(key) or (
                lmdb.open(str(path), readonly=True, lock=False, max_dbs=8, subdir=True, max_readers=1024), 0)
            damage = None if users else _truncation(env, path / DATA_FILE)  # checked before the first read
            if damage:
                env.close()
                raise StoreDamagedError(f"{damage}; rerun emsearch build-index with the same input and options "
                                        "to repair it")
            store = cls(env, readonly=True)
            _READERS[key] = (env, users + 1)
            return store
        except lmdb.Error as e:
            raise StoreDamagedError(f"{path}: unreadable sentence store ({e}); rerun emsearch build-index with the "
                                    "same input and options to repair it") from None

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run `fn` in one write transaction; a failed commit (a full disk, an I/O error) is a WriteError, and
        leaves the store as it was before the transaction."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:  # the aborted transaction is redone in a map twice the size
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as e:
                raise write_error(Path(self.env.path()) / DATA_FILE, str(e)) from None

    def put_shard(self, mark: str, first_row: int, ids: Sequence[str], langs: Sequence[str],
                  texts: Sequence[str], metas: Sequence[dict[str, Any]]) -> None:
        """Store rows first_row, first_row + 1, ... and the mark, in one transaction."""

        def put(txn: lmdb.Transaction) -> None:
            for i, (id_, lang, text, meta) in enumerate(zip(ids, langs, texts, metas)):
                row = first_row + i
                key = _row_key(row)
                id_key = id_.encode("utf-8")
                if len(id_key) > MAX_ID_BYTES:
                    raise EmsearchError(f"id of row {row} is {len(id_key)} bytes long; ids may have at most "
                                     f"{MAX_ID_BYTES}: use a shorter --id-column")
                if not txn.put(id_key, key, overwrite=False, db=self.db["ids"]):
                    other = int.from_bytes(txn.get(id_key, db=self.db["ids"]), "big")
                    if other != row:
                        raise DuplicateIdError(f"duplicate id {id_!r} (rows {other} and {row}): "
                                               "ids must be unique; fix the input or drop --id-column")
                record = {"id": id_, "lang": lang, "text": text, "meta": meta}
                txn.put(key, json.dumps(record, ensure_ascii=False, default=str).encode("utf-8"),
                        db=self.db["records"])
                txn.put(lang.encode() + b"\0" + key, b"", db=self.db["bylang"])
            txn.put(mark.encode(), b"", db=self.db["marks"])

        self._write(put)

    def has_mark(self, mark: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(mark.encode(), db=self.db["marks"]) is not None

    def finalize(self) -> dict[str, int]:
        """Write each language's sorted row array (one language in memory at a time); returns rows per language."""
        counts: dict[str, int] = {}
        self._write(lambda txn: txn.drop(self.db["langs"], delete=False))
        for lang in self._bylang_languages():
            prefix = lang.encode() + b"\0"
            with self.env.begin() as txn:
                cur = txn.cursor(db=self.db["bylang"])
                cur.set_range(prefix)
                keys = takewhile(lambda k: k.startswith(prefix), cur.iternext(values=False))
                rows = np.fromiter((int.from_bytes(k[-8:], "big") for k in keys), dtype="<i8")
            counts[lang] = len(rows)
            self._write(lambda txn: txn.put(lang.encode(), rows.tobytes(), db=self.db["langs"]))
        return counts

    def _bylang_languages(self) -> list[str]:
        """Languages present in `bylang`, found by jumping from one language's keys to the next."""
        langs = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db["bylang"])
            found = cur.first()
            while found:
                lang = cur.key()[:-9]
                langs.append(lang.decode())
                found = cur.set_range(lang + b"\x01")
        return langs

    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self.db["records"])["entries"]

    def languages(self) -> dict[str, int]:
        with self.env.begin() as txn:
            return {k.decode(): len(v) // 8 for k, v in txn.cursor(db=self.db["langs"])}

    def rows_of_lang(self, lang: str) -> np.ndarray | None:
        """Sorted int64 rows of the (canonical) language, or None when the store has none."""
        with self.env.begin() as txn:
            raw = txn.get(lang.encode(), db=self.db["langs"])
        return None if raw is None else np.frombuffer(raw, dtype="<i8").astype(np.int64)

    def row_of_id(self, id_: str) -> int | None:
        with self.env.begin() as txn:
            raw = txn.get(str(id_).encode("utf-8"), db=self.db["ids"])
        return None if raw is None else int.from_bytes(raw, "big")

    def get(self, rows: Sequence[int]) -> list[Record]:
        out = []
        with self.env.begin() as txn:
            for row in rows:
                raw = txn.get(_row_key(row), db=self.db["records"]) if row >= 0 else None
                if raw is None:
                    raise LookupError(f"row {row} is not in the sentence store (it holds {len(self)} rows)")
                d = json.loads(raw)
                out.append(Record(int(row), d["id"], d["lang"], d["text"], d["meta"]))
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        key = Path(self.env.path()).resolve()
        env, users = _READERS.get(key, (None, 0))
        if env is self.env:
            if users > 1:
                _READERS[key] = (env, users - 1)
                return
            del _READERS[key]
        self.env.close()
