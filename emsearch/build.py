"""`build_index(BuildConfig(...))`: corpus → sentence store + fp16 embedding shards → FAISS index. Resumable.

    emsearch build-index corpus.parquet --name news          # or, in Python:
    build_index(BuildConfig(input="corpus.parquet", out="indexes/news"), console=Console())

Stages, each safe to kill (SIGKILL included) and redone only where unfinished by rerunning the same command:
 1. scan    read the whole input once, validating it; nothing is written before this passes
 2. shards  per `shard_size` rows: the rows go to the LMDB store with the shard's mark (one transaction); then,
            unless the shard's .npy is recorded in the manifest with a matching checksum, the rows are encoded
            (windows of `window_rows`, by the in-process, process-pool or Ray runner), written, and recorded
 3. store   per-language row lists
 4. index   choose parameters, train on a sample, populate groups, calibrate nprobe, merge (each recorded)
 5. `"complete": true` goes into the manifest last; until then `Index.open` refuses the directory.
A complete index rebuilt with other index options (`--index-factory`, `--max-index-memory`, `--merge`) redoes
stage 4 only, reusing the embeddings.

Memory is bounded by the shard, not the corpus: one shard of rows (texts + metadata) plus at most
2·parallelism windows of vectors in flight, plus the training sample (see `index_choice`).
"""

from __future__ import annotations

import resource
import shutil
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from rich.console import Console

from emsearch.corpus import Corpus, CorpusSpec, Row
from emsearch.encode_workers import make_runner
from emsearch.encoder import Encoder
from emsearch.index import Index, load_faiss
from emsearch.index_build import (CALIBRATION_TARGET, calibrate, group_blocks, group_shards, merge_ondisk, populate,
                                  train_index, write_index)
from emsearch.index_choice import choose_index
from emsearch.progress import bar, stage
from emsearch.shards import (INDEX_FORMAT, Shard, ShardedEmbeddings, file_sha256, manifest_shards,
                             read_manifest, shard_is_valid, write_manifest, write_shard)
from emsearch.store import Store

INDEX_PARTS = ("embeddings", "store", "faiss")


class BuildError(ValueError):
    """The output directory cannot take this build (another index, not an index, inconsistent state)."""


@dataclass(frozen=True)
class BuildConfig:
    """One build; what decides the embeddings is also the resume identity (input, model, columns, shard_size)."""

    input: str
    out: str
    model: str | None = None  # model bundle directory; None = the default model
    text_column: str = "text"
    lang_column: str = "lang"
    id_column: str | None = None
    lang: str | None = None  # language of every row
    shard_size: int = 50_000  # rows per embedding shard: the unit of resumption
    window_rows: int = 4096  # rows per encoding task (length-sorted inside)
    batch_tokens: int = 16384
    workers: int = 1  # encoding processes (or Ray actors); 0 = one per cluster CPU/GPU with Ray
    ray: bool = False
    ray_address: str | None = None
    index_factory: str | None = None  # overrides the automatic choice
    max_index_memory: int = 4 << 30
    merge: bool = False  # merge IVF groups into one on-disk index
    overwrite: bool = False


def default_out(input: str | Path, name: str | None = None) -> Path:
    """indexes/<name>, the name defaulting to the input's file stem."""
    return Path("indexes") / (name or Path(input).stem)


def build_index(cfg: BuildConfig, console: Console | None = None, *, encoder: Encoder | None = None) -> dict[str, Any]:
    """Run (or resume) the build; returns the final manifest.

    `encoder`, when given, must be the model at `cfg.model` already loaded; it encodes in-process (worker
    processes and Ray actors load `cfg.model` themselves).
    """
    say = console.print if console is not None else (lambda *a, **k: None)
    if cfg.shard_size < 1 or cfg.window_rows < 1 or cfg.workers < 0:
        raise ValueError("--shard-size and the window size must be at least 1, --workers at least 0")
    corpus = Corpus(CorpusSpec(Path(cfg.input), cfg.text_column, cfg.lang_column, cfg.id_column, cfg.lang))
    encoder = encoder if encoder is not None else Encoder.load(cfg.model)
    t0 = time.perf_counter()
    with stage(console, f"checking {cfg.input}"):
        n = corpus.scan()
    scan_seconds = round(time.perf_counter() - t0, 2)
    choose_index(n, encoder.dim, cfg.max_index_memory, cfg.index_factory)  # a bad request fails now, not after encoding
    out = Path(cfg.out)
    manifest = _prepare(out, _new_manifest(cfg, corpus, encoder, n), cfg.overwrite, say)
    if manifest.get("complete") and manifest["index"]["requested"] == _requested(cfg) and _intact(out, manifest):
        say(f"{out} is up to date (pass --overwrite to rebuild it)")
        return manifest
    manifest["complete"] = False
    write_manifest(out, manifest)

    t0 = time.perf_counter()
    before = [(s["start"], s["sha256"]) for s in manifest["shards"]]
    shards = _encode_shards(out, cfg, corpus, encoder, manifest, n, console)
    if manifest.get("index") and [(s.start, s.sha256) for s in shards] != before:
        manifest["index"] = None  # vectors changed under a built index: rebuild it from these
    manifest["counts"].update(rows=n, skipped_empty=corpus.skipped, truncated=sum(s.truncated for s in shards))
    store = Store.create(out / "store")
    try:
        if len(store) != n:
            raise BuildError(f"{out}/store holds {len(store):,} rows, expected {n:,}; rebuild with --overwrite")
        manifest["counts"]["languages"] = store.finalize()
    finally:
        store.close()
    seconds = manifest.setdefault("seconds", {})  # summed over the runs of a resumed build
    seconds["scan"] = scan_seconds
    seconds["encode"] = round(seconds.get("encode", 0) + time.perf_counter() - t0, 2)
    _peak(manifest, "encode")
    if corpus.skipped:
        say(f"skipped {corpus.skipped:,} empty or null texts")
    if manifest["counts"]["truncated"]:
        say(f"[yellow]warning:[/] {manifest['counts']['truncated']:,} texts were longer than the model's "
            f"{encoder.config.max_len} tokens and were truncated")
    write_manifest(out, manifest)

    _build_faiss(out, cfg, manifest, encoder, console)
    manifest["complete"] = True
    manifest["finished"] = _now()
    write_manifest(out, manifest)
    return manifest


def _intact(out: Path, manifest: dict[str, Any]) -> bool:
    """Every file the manifest names is there (a rerun repairs what is not: missing shards are re-encoded)."""
    info = manifest["index"]
    files = [s["file"] for s in manifest["shards"]] + ["store/data.mdb"]
    if info["params"]["kind"] != "flat":
        files += [info["merged"]["file"], info["merged"]["data"]] if info["merged"] else \
            [g["file"] for g in info["groups"]]
    return all((out / f).is_file() for f in files)


def _peak(manifest: dict[str, Any], stage: str) -> None:
    """Record this process's peak resident memory (MiB) so far, at the end of `stage`."""
    manifest.setdefault("peak_rss_mib", {})[stage] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _requested(cfg: BuildConfig) -> dict[str, Any]:
    return {"factory": cfg.index_factory, "max_memory": cfg.max_index_memory, "merge": cfg.merge}


def _new_manifest(cfg: BuildConfig, corpus: Corpus, encoder: Encoder, n: int) -> dict[str, Any]:
    from emsearch import __version__

    stat = corpus.path.stat()
    return {
        "format": INDEX_FORMAT, "complete": False, "emsearch": __version__, "created": _now(),
        "model": {"id": encoder.model_id, "path": str(Path(cfg.model).resolve()) if cfg.model else None,
                  "dim": encoder.dim, "max_len": encoder.config.max_len},
        "normalization": "l2", "metric": "inner_product", "dtype": "float16",
        "input": {"path": str(corpus.path.resolve()), "format": corpus.format, "bytes": stat.st_size,
                  "mtime_ns": stat.st_mtime_ns},
        "build": {"text_column": cfg.text_column, "lang_column": cfg.lang_column, "id_column": corpus.id_column,
                  "lang": corpus.fixed_lang, "shard_size": cfg.shard_size},
        "counts": {"rows": n, "skipped_empty": 0, "truncated": 0, "languages": {}},
        "shards": [], "index": None,
    }


def _same_build(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["input"] == b["input"] and a["model"]["id"] == b["model"]["id"] and a["build"] == b["build"]


def _prepare(out: Path, new: dict[str, Any], overwrite: bool, say) -> dict[str, Any]:
    """The manifest to continue from: the existing one (same build: resume), or `new` in a fresh directory."""
    try:
        old = read_manifest(out)
    except ValueError:
        if not overwrite:
            raise
        old = {"corrupt": True}
    if old is None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise BuildError(f"{out} exists and is not an emsearch index; choose another --out or --name")
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, new)
        return new
    if not overwrite and _same_build(old, new):
        if not old.get("complete"):
            say(f"resuming the build in {out}: {len(old['shards'])} shard(s) already encoded")
        return old
    same_path = old["input"]["path"] == new["input"]["path"]
    restart = same_path and not old.get("complete") and old["model"]["id"] == new["model"]["id"] and \
        old["build"] == new["build"]  # an unfinished build whose input file was since fixed: nothing to keep
    if not overwrite and not restart:
        if same_path and old["model"]["id"] == new["model"]["id"]:
            changed = [k for k in ("bytes", "mtime_ns") if old["input"][k] != new["input"][k]] + \
                      [k for k in new["build"] if old["build"].get(k) != new["build"][k]]
            what = "an index" if old.get("complete") else "an unfinished build"
            raise BuildError(f"{out} holds {what} of an older version of this input, or with other settings "
                             f"({', '.join(changed)} differ); rerun with the same settings, or pass --overwrite")
        what = "an index" if old.get("complete") else "an unfinished build"
        raise BuildError(f"{out} holds {what} of {old['input']['path']} (model {old['model']['id']}); "
                         "choose another --name or --out, or pass --overwrite to replace it")
    if not overwrite:
        say(f"{new['input']['path']} changed since the unfinished build in {out}: starting over")
    if "corrupt" not in old:  # never leave a complete-looking manifest over half-deleted files
        write_manifest(out, {**old, "complete": False})
    for part in INDEX_PARTS:
        shutil.rmtree(out / part, ignore_errors=True)
    write_manifest(out, new)
    return new


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


def _encode_shards(out: Path, cfg: BuildConfig, corpus: Corpus, encoder: Encoder, manifest: dict[str, Any],
                   n: int, console: Console | None) -> list[Shard]:
    done = {s.index: s for s in manifest_shards(manifest)}
    store = Store.create(out / "store")
    runner = make_runner(encoder, cfg.model, cfg.workers, cfg.batch_tokens, ray=cfg.ray, ray_address=cfg.ray_address)
    windows: deque[tuple[_Pending, Any]] = deque()

    def collect(progress) -> None:
        shard, future = windows.popleft()
        vectors, truncated = future.result()
        shard.parts.append(vectors)
        shard.truncated += truncated
        progress.advance(len(vectors))
        if sum(len(p) for p in shard.parts) == shard.rows:
            done[shard.index] = write_shard(out, shard.index, shard.start, np.concatenate(shard.parts),
                                            shard.truncated)
            manifest["shards"] = [s.to_json() for _, s in sorted(done.items())]
            write_manifest(out, manifest)

    try:
        with bar(console, "encoding", n) as progress:
            for index, start, rows in _shard_rows(corpus.rows(), cfg.shard_size):
                mark = f"shard:{index}"
                if not store.has_mark(mark):
                    store.put_shard(mark, start, [r.id for r in rows], [r.lang for r in rows],
                                    [r.text for r in rows], [r.meta for r in rows])
                old = done.get(index)
                if old is not None and (old.start, old.stop) == (start, start + len(rows)) and \
                        shard_is_valid(out, old):
                    progress.advance(len(rows))
                    continue
                done.pop(index, None)
                shard = _Pending(index, start, len(rows))
                for i in range(0, len(rows), cfg.window_rows):
                    windows.append((shard, runner.submit([r.text for r in rows[i : i + cfg.window_rows]])))
                    while len(windows) > 2 * runner.parallelism:
                        collect(progress)
            while windows:
                collect(progress)
    finally:
        runner.close()
        store.close()
    return [s for _, s in sorted(done.items())]


def _build_faiss(out: Path, cfg: BuildConfig, manifest: dict[str, Any], encoder: Encoder,
                 console: Console | None) -> None:
    """Stage 4: choose, train, populate, calibrate, merge; every finished step is recorded in the manifest."""
    shards = manifest_shards(manifest)
    n, dim = manifest["counts"]["rows"], manifest["model"]["dim"]
    params = choose_index(n, dim, cfg.max_index_memory, cfg.index_factory)
    info = manifest.get("index")
    if not info or info["requested"] != _requested(cfg) or info["params"] != params.to_json():
        shutil.rmtree(out / "faiss", ignore_errors=True)
        info = manifest["index"] = {"requested": _requested(cfg), "params": params.to_json(), "trained": None,
                                    "groups": [], "nprobe": None, "rerank": params.rerank, "calibration": None,
                                    "merged": None, "gpu": False, "seconds": {}}
        write_manifest(out, manifest)
    if params.kind == "flat":
        return  # the exact index is the shards themselves, loaded into IndexFlatIP when opened
    (out / "faiss").mkdir(exist_ok=True)
    emb = ShardedEmbeddings(out, shards, dim, mmap=False)  # passes over every row: one shard resident at a time
    trained = _trained(out, manifest, params, emb, console)
    groups = group_shards(shards, params.group_rows)
    recorded = {g["file"]: g for g in info["groups"]}
    todo = []
    for gi, group in enumerate(groups):
        name = f"faiss/group-{gi:04d}.index"
        g = recorded.get(name)
        if not (g and (g["start"], g["stop"]) == (group[0].start, group[-1].stop) and (out / name).is_file()
                and file_sha256(out / name) == g["sha256"]):
            todo.append((name, group))
    merged = info["merged"]
    if merged and all((out / merged[key]).is_file() for key in ("file", "data")):
        todo = []  # the groups were merged (and deleted) before a crash
    elif merged:
        info["merged"] = None  # lost: repopulate the groups and merge again
    info["groups"] = [g for g in info["groups"] if g["file"] not in {name for name, _ in todo}]
    t0 = time.perf_counter()
    with bar(console, "adding to the index", sum(s.rows for _, grp in todo for s in grp)) as progress:
        for name, index in _populated(cfg, emb, trained, todo):
            write_index(index, out / name)
            group = dict(todo)[name]
            info["groups"].append({"file": name, "start": group[0].start, "stop": group[-1].stop,
                                   "sha256": file_sha256(out / name), "bytes": (out / name).stat().st_size})
            info["groups"].sort(key=lambda g: g["start"])
            info["seconds"]["add"] = round(info["seconds"].get("add", 0) + time.perf_counter() - t0, 2)
            _peak(manifest, "add")
            t0 = time.perf_counter()
            write_manifest(out, manifest)
            progress.advance(group[-1].stop - group[0].start)
    if info["nprobe"] is None and params.kind == "ivf":
        t0 = time.perf_counter()
        with stage(console, f"calibrating nprobe for recall@10 ≥ {CALIBRATION_TARGET}"):
            store = Store.open(out / "store")
            index = Index(out, manifest, encoder, emb, store, load_faiss(out, manifest, emb))
            info["nprobe"], info["rerank"], info["calibration"] = calibrate(
                lambda xq, k, p, r: index.search_vectors(xq, k, nprobe=p, rerank=r), emb, params.nlist,
                params.rerank)
            index.close()
        info["seconds"]["calibrate"] = round(time.perf_counter() - t0, 2)
        _peak(manifest, "calibrate")
        info["recall_at_10"] = next(c["recall"] for c in info["calibration"]
                                    if (c["nprobe"], c["rerank"]) == (info["nprobe"], info["rerank"]))
        if info["recall_at_10"] < CALIBRATION_TARGET and console is not None:
            console.print(f"[yellow]warning:[/] recall@10 reaches only {info['recall_at_10']:.3f} (nprobe "
                          f"{info['nprobe']}, re-ranking {info['rerank']}); for more, use a larger PQ or Flat "
                          "(--index-factory)")
        write_manifest(out, manifest)
    if cfg.merge and params.kind == "ivf" and not info["merged"]:
        t0 = time.perf_counter()
        with stage(console, "merging the groups into one on-disk index"):
            info["merged"] = merge_ondisk(out, info["trained"]["file"], [g["file"] for g in info["groups"]])
        info["seconds"]["merge"] = round(time.perf_counter() - t0, 2)
        _peak(manifest, "merge")
        write_manifest(out, manifest)
        for g in info["groups"]:  # folded into the merged index; their records stay for `info`
            (out / g["file"]).unlink(missing_ok=True)
    elif cfg.merge and params.kind != "ivf" and console is not None:
        console.print(f"--merge: a {params.factory} index has no inverted lists to merge; kept as is")


def _trained(out: Path, manifest: dict[str, Any], params, emb: ShardedEmbeddings, console) -> faiss.Index:
    info = manifest["index"]
    name = "faiss/trained.index"
    if info["trained"] and (out / name).is_file() and file_sha256(out / name) == info["trained"]["sha256"]:
        return faiss.read_index(str(out / name))
    t0 = time.perf_counter()
    with stage(console, f"training {params.factory} on {min(params.train_rows, emb.ntotal):,} vectors"):
        index, info["gpu"] = train_index(params, emb)
    write_index(index, out / name)
    info["trained"] = {"file": name, "sha256": file_sha256(out / name)}
    info["seconds"]["train"] = round(time.perf_counter() - t0, 2)
    _peak(manifest, "train")
    write_manifest(out, manifest)
    return index


def _populated(cfg: BuildConfig, emb: ShardedEmbeddings, trained: faiss.Index, todo):
    """(file name, populated index) per group to do: here, or in Ray tasks."""
    if cfg.ray and todo:
        from emsearch import ray_workers

        serialized = faiss.serialize_index(trained)
        blocks = ([*group_blocks(emb, group)] for _, group in todo)
        for (name, _), data in zip(todo, ray_workers.populate_groups(serialized, blocks, in_flight=4)):
            yield name, faiss.deserialize_index(data)
        return
    for name, group in todo:
        yield name, populate(faiss.clone_index(trained), group_blocks(emb, group))
