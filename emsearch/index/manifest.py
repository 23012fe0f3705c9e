"""The index manifest (`manifest.json`): one typed record of what an index directory holds and how it was built.

    manifest = load(Path("indexes/news"))        # None when there is no manifest; validated, typed
    manifest.counts.rows, manifest.index.params.kind, manifest.index.nprobe
    save(path, replace(manifest, complete=True))  # atomic: readers see the old manifest or the new one

Every reader of an index goes through here (the build, `Index.open`, `emsearch info`). The build records each
finished step by saving a new manifest, and writes `complete=True` last; `Index.open` refuses anything less.
The JSON layout is versioned by `format`; a manifest of another format is refused with a message.

The manifest is the one record of every other file's checksum, so it guards itself twice: it carries the SHA-256
of its own content (`checksum`), which catches a changed byte that still parses, and it is saved as two copies
(`manifest.json`, then `manifest.json.bak`): when one is damaged or lost, `load` reads the other and the next build
rewrites both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emsearch.atomic import write_text_atomic
from emsearch.config import ConfigError, from_dict
from emsearch.errors import EmsearchError
from emsearch.index.choice import IndexParams
from emsearch.index.shards import Shard

FORMAT = "emsearch-index-1"
MANIFEST = "manifest.json"
COPY = "manifest.json.bak"  # the second copy, read when the first is damaged or missing
INDEX_HOME = Path("indexes")  # where `emsearch build-index --name NAME` puts indexes
PARTS = ("embeddings", "store", "faiss")  # what an index directory holds besides its manifest
CENTRINGS = ("corpus", "language", "none")  # what a build may centre vectors on (`Requested.centring`)


class ManifestError(EmsearchError):
    """A manifest that is corrupt, of another format, or not an emsearch index's."""


@dataclass(frozen=True)
class ModelRecord:
    id: str  # hash of the weights: what an index must be searched with
    path: str | None  # the bundle directory at build time; None = the default model
    dim: int
    max_len: int
    format: str | None = None  # the model folder's format: "emsearch-ems-1", "model2vec", "sentence-transformers"


@dataclass(frozen=True)
class InputRecord:
    path: str
    format: str
    bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class BuildRecord:
    """The build options that decide the embeddings: with the input and the model, the resume identity."""

    text_column: str
    lang_column: str
    id_column: str | None
    lang: str | None
    shard_size: int


@dataclass(frozen=True)
class Counts:
    rows: int
    skipped_empty: int = 0
    truncated: int = 0
    languages: dict[str, int] = field(default_factory=dict)  # rows per canonical language code


@dataclass(frozen=True)
class Requested:
    """The index options of the build command: a rerun with others rebuilds the FAISS stage only."""

    factory: str | None
    max_memory: int
    merge: bool
    centre: bool = False  # compare vectors centred on the corpus mean; manifests from before it lack the field
    by_language: bool = False  # with `centre`: each row on its own language's mean instead

    @property
    def centring(self) -> str:
        """The build's `--centre`: one of CENTRINGS."""
        return "language" if self.by_language else "corpus" if self.centre else "none"


@dataclass(frozen=True)
class FileRecord:
    file: str
    sha256: str


@dataclass(frozen=True)
class GroupRecord:
    """One populated IVF group: the index file holding global rows [start, stop)."""

    file: str
    start: int
    stop: int
    sha256: str
    bytes: int


@dataclass(frozen=True)
class MergedRecord:
    file: str  # the merged index
    data: str  # its memory-mapped inverted lists
    bytes: int
    sha256: str | None = None  # of `file`; None in indexes built before it was recorded
    data_sha256: str | None = None  # of `data`


@dataclass(frozen=True)
class CalibrationPoint:
    nprobe: int
    rerank: int
    recall: float  # recall@10 against exact search


@dataclass(frozen=True)
class IndexRecord:
    """The FAISS stage: what was asked, chosen, trained, populated, calibrated and merged."""

    requested: Requested
    params: IndexParams
    centre: tuple[float, ...] | None = None  # the mean of every stored vector, when `requested.centre`
    language_centres: dict[str, tuple[float, ...]] | None = None  # language → its rows' mean, with `by_language`
    trained: FileRecord | None = None
    groups: tuple[GroupRecord, ...] = ()
    nprobe: int | None = None  # calibrated; None until then (and for a flat index)
    rerank: int = 0  # candidates re-scored exactly, calibrated
    calibration: tuple[CalibrationPoint, ...] | None = None
    recall_at_10: float | None = None  # at the calibrated (nprobe, rerank)
    merged: MergedRecord | None = None
    gpu: bool = False  # k-means ran on a GPU
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    model: ModelRecord
    input: InputRecord
    build: BuildRecord
    counts: Counts
    emsearch: str  # the version that started the build
    created: str
    format: str = FORMAT
    complete: bool = False
    finished: str | None = None
    normalization: str = "l2"
    metric: str = "inner_product"
    dtype: str = "float16"
    shards: tuple[Shard, ...] = ()
    index: IndexRecord | None = None
    store: FileRecord | None = None  # the sentence store's data file, recorded when the store is final
    seconds: dict[str, float] = field(default_factory=dict)  # summed over the runs of a resumed build
    peak_rss_mib: dict[str, int] = field(default_factory=dict)  # per stage

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_peak(self, stage: str) -> Manifest:
        """This manifest with the process's peak resident memory (MiB) so far recorded for `stage`."""
        peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return dataclasses.replace(self, peak_rss_mib={**self.peak_rss_mib, stage: peak})


def load(root: Path) -> Manifest | None:
    """The manifest of the index directory `root`, validated; None when it has none. A damaged or missing
    `manifest.json` is read from its copy; a ManifestError when neither copy is whole."""
    main, copy = Path(root) / MANIFEST, Path(root) / COPY
    if not main.is_file() and not copy.is_file():
        return None
    try:
        return read(main)
    except ManifestError:
        if not copy.is_file():
            raise
        return read(copy)


def read(path: Path) -> Manifest:
    """One manifest file, validated (its checksum included, where it has one); a ManifestError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing; rerun emsearch build-index with the same input and options to "
                            "repair it") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is corrupt ({e}); rebuild with emsearch build-index --overwrite") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path}: not an emsearch index manifest (format {FORMAT} expected)")
    recorded = data.pop("checksum", None)  # absent in manifests written before it was recorded
    if recorded is not None and recorded != _checksum(data):
        raise ManifestError(f"{path} is damaged (its content does not match its checksum); rerun emsearch "
                            "build-index with the same input and options to repair it")
    try:
        return from_dict(Manifest, data)
    except (ConfigError, TypeError) as e:
        raise ManifestError(f"{path} is malformed ({e}); rebuild with emsearch build-index --overwrite") from None


def _checksum(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def load_index(root: Path, *, complete: bool = False) -> Manifest:
    """The manifest of an index that must be there (and, with `complete`, finished); a ManifestError saying what
    to run otherwise."""
    manifest = load(root)
    if manifest is None:
        raise ManifestError(f"{root}: no index here (no manifest.json); build one with emsearch build-index")
    if complete and (not manifest.complete or manifest.index is None):
        raise ManifestError(f"{root} is an unfinished build; rerun emsearch build-index with the same input and "
                            "options to finish it")
    return manifest


def save(root: Path, manifest: Manifest) -> None:
    """Both copies, each atomically: the main one first, so that a crash between the two leaves the main one new
    and the copy one step behind, either of which a rerun resumes from."""
    data = manifest.to_json()
    text = json.dumps({**data, "checksum": _checksum(data)}, indent=1, ensure_ascii=False) + "\n"
    for name in (MANIFEST, COPY):
        write_text_atomic(Path(root) / name, text)


def facts(root: Path, manifest: Manifest) -> dict[str, Any]:
    """The manifest's key facts plus the sizes on disk: what `emsearch info` shows (also of unfinished builds)."""
    sizes = {part: sum(f.stat().st_size for f in (root / part).rglob("*") if f.is_file()) for part in PARTS}
    index = manifest.index
    rows = manifest.counts.rows
    record = {k: getattr(index, k) if index else None
              for k in ("params", "nprobe", "rerank", "recall_at_10", "calibration", "merged", "gpu")}
    return {
        "path": str(root), "complete": manifest.complete,
        "model": dataclasses.asdict(manifest.model), "input": dataclasses.asdict(manifest.input),
        "counts": dataclasses.asdict(manifest.counts),
        "shards": len(manifest.shards), "shard_size": manifest.build.shard_size,
        "index": _plain(record) | {"groups": len(index.groups) if index else 0,
                                   "centred": bool(index and index.centre is not None),
                                   "centring": centring(index)},
        "seconds": {**manifest.seconds, **(index.seconds if index else {})},
        "bytes": sizes | {"total": sum(sizes.values())},
        "bytes_per_vector": round(sum(sizes.values()) / rows, 1) if rows else None,
    }


def centring(index: IndexRecord | None) -> str:
    """What a recorded index centres on, one of CENTRINGS (a build not that far yet: "none")."""
    if index is not None and index.language_centres is not None:
        return "language"
    return "corpus" if index is not None and index.centre is not None else "none"


def _plain(value: Any) -> Any:
    """Dataclasses (and tuples of them) as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def resolve_index(name_or_path: str | Path | None, home: Path = INDEX_HOME) -> Path:
    """The index directory meant by a path, by the name of one under `home`, or (None) by being the only one
    there; otherwise a one-line error asking for one."""
    if name_or_path is not None:
        path = Path(name_or_path)
        if not path.exists() and len(path.parts) == 1 and (home / path).is_dir():
            return home / path
        return path
    found = sorted(p for p in home.iterdir()
                   if (p / MANIFEST).is_file() or (p / COPY).is_file()) if home.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise ManifestError(f"no index under {home}/: build one with `emsearch build-index CORPUS --name NAME`, "
                            "or give --index PATH")
    raise ManifestError(f"{len(found)} indexes under {home}/ ({', '.join(p.name for p in found)}): "
                        "choose one with --index PATH")


def index_facts(name_or_path: str | Path) -> dict[str, Any]:
    """`facts` of the index at a path, or of that name under indexes/ (an unfinished build too): `emsearch info`."""
    path = resolve_index(name_or_path)
    return facts(path, load_index(path))
