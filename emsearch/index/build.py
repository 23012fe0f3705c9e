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
A complete index rebuilt with other index options (`--index-factory`, `--max-index-memory`, `--merge`,
`--centre`) redoes stage 4 only, reusing the embeddings.

Memory is bounded by the shard, not the corpus: one shard of rows (texts + metadata) plus at most
2·parallelism windows of vectors in flight, plus the training sample (see `choice`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from emsearch.atomic import file_sha256, write_error
from emsearch.corpus import Corpus, CorpusSpec
from emsearch.errors import EmsearchError
from emsearch.index import manifest as mf
from emsearch.index.build_config import BuildConfig
from emsearch.index.build_faiss import build_faiss
from emsearch.index.choice import choose_index
from emsearch.index.encode_stage import encode_shards
from emsearch.index.manifest import (CENTRINGS, INDEX_HOME, BuildRecord, Counts, FileRecord, InputRecord,
                                     Manifest, ManifestError, ModelRecord, Requested)
from emsearch.index.store import Store
from emsearch.index.verify import STORE_FILE, verify_index
from emsearch.progress import stage

if TYPE_CHECKING:
    from emsearch.encoder import Encoder


class BuildError(EmsearchError):
    """The output directory cannot take this build (another index, not an index, inconsistent state)."""


def default_out(input: str | Path, name: str | None = None) -> Path:
    """INDEX_HOME/<name> (indexes/), the name defaulting to the input's file stem."""
    return INDEX_HOME / (name or Path(input).stem)


def build_index(cfg: BuildConfig, console: Console | None = None, *, encoder: Encoder | None = None) -> Manifest:
    """Run (or resume) the build; returns the final manifest.

    `encoder`, when given, must be the model at `cfg.model` already loaded (or an object that encodes like it,
    e.g. one answering with given vectors); it encodes in-process (worker processes and Ray actors load
    `cfg.model` themselves).
    """
    from emsearch.encoder import Encoder  # torch: imported when a build starts, so that the CLI starts fast

    say = console.print if console is not None else (lambda *a, **k: None)
    for name, value, least in (("--shard-size", cfg.shard_size, 1), ("window_rows", cfg.window_rows, 1),
                               ("--workers", cfg.workers, 0), ("--batch-tokens", cfg.batch_tokens, 1)):
        if value < least:
            raise BuildError(f"{name} must be at least {least}, got {value}")
    if cfg.centre not in CENTRINGS:
        raise BuildError(f"--centre must be one of {', '.join(CENTRINGS)}, got {cfg.centre!r}")
    corpus = Corpus(CorpusSpec(Path(cfg.input), cfg.text_column, cfg.lang_column, cfg.id_column, cfg.lang))
    encoder = encoder if encoder is not None else Encoder.load(cfg.model)
    t0 = time.perf_counter()
    with stage(console, f"checking {cfg.input}"):
        n = corpus.scan()
    scan_seconds = round(time.perf_counter() - t0, 2)
    choose_index(n, encoder.dim, cfg.max_index_memory, cfg.index_factory)  # a bad request fails now, not after encoding
    out = Path(cfg.out)
    with _build_lock(out):
        return _build(cfg, out, corpus, encoder, n, scan_seconds, console, say)


def _build(cfg: BuildConfig, out: Path, corpus: Corpus, encoder: Encoder, n: int, scan_seconds: float,
           console: Console | None, say) -> Manifest:
    from emsearch.index.runners import make_runner  # torch, like the encoder: loaded when a build runs

    manifest = _prepare(out, _new_manifest(cfg, corpus, encoder, n), cfg.overwrite, say)
    if manifest.complete and manifest.index and manifest.index.requested == _requested(cfg):
        verdict = verify_index(out, manifest)
        if verdict.whole:
            say(f"{out} is up to date (pass --overwrite to rebuild it)")
            return manifest
        say(f"repairing {out}: " + "; ".join(verdict.problems))
        if verdict.store_damaged:  # re-filled from the input; shards whose checksum holds are kept
            shutil.rmtree(out / "store", ignore_errors=True)
        # a damaged shard is re-encoded, a damaged FAISS file rebuilt: each stage checks its own files' checksums
    manifest = replace(manifest, complete=False)
    mf.save(out, manifest)

    t0 = time.perf_counter()
    before = [(s.start, s.sha256) for s in manifest.shards]
    runner = make_runner(encoder, cfg.model, cfg.workers, cfg.batch_tokens, ray=cfg.ray, ray_address=cfg.ray_address)
    manifest = encode_shards(out, corpus, runner, manifest, shard_size=cfg.shard_size, window_rows=cfg.window_rows,
                             console=console)
    if manifest.index and [(s.start, s.sha256) for s in manifest.shards] != before:
        manifest = replace(manifest, index=None)  # vectors changed under a built index: rebuild it from these
    store = Store.create(out / "store")
    try:
        if len(store) != n:
            raise BuildError(f"{out}/store holds {len(store):,} rows, expected {n:,}; rebuild with --overwrite")
        languages = store.finalize()
    finally:
        store.close()
    (out / "store" / "lock.mdb").unlink(missing_ok=True)  # readers open without it; a writer makes a new one
    store_file = FileRecord(STORE_FILE, file_sha256(out / STORE_FILE))
    counts = Counts(rows=n, skipped_empty=corpus.skipped, truncated=sum(s.truncated for s in manifest.shards),
                    languages=languages)
    seconds = {**manifest.seconds, "scan": scan_seconds,  # summed over the runs of a resumed build
               "encode": round(manifest.seconds.get("encode", 0) + time.perf_counter() - t0, 2)}
    manifest = replace(manifest, counts=counts, seconds=seconds, store=store_file).with_peak("encode")
    if corpus.skipped:
        say(f"skipped {corpus.skipped:,} empty or null texts")
    if counts.truncated:
        say(f"[yellow]warning:[/] {counts.truncated:,} texts were longer than the model's "
            f"{encoder.config.max_len} tokens and were truncated")
    mf.save(out, manifest)

    manifest = build_faiss(out, manifest, _requested(cfg), ray=cfg.ray, console=console)
    manifest = replace(manifest, complete=True, finished=_now())
    mf.save(out, manifest)
    return manifest


LOCK = ".build.lock"


@contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """One build per output directory at a time: an exclusive lock on OUT/.build.lock, which names its holder.

    The lock is the kernel's (flock), so a killed build never leaves a stale one behind."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} is a file, not an index directory; choose another --out or --name")
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise BuildError(f"another build is writing {out} (process {holder}); wait for it to finish, or stop it "
                             "and rerun this command to resume") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        except OSError as e:
            raise write_error(path, e) from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # before the lock goes: a new build starts from a fresh file


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _requested(cfg: BuildConfig) -> Requested:
    return Requested(factory=cfg.index_factory, max_memory=cfg.max_index_memory, merge=cfg.merge,
                     centre=cfg.centre != "none", by_language=cfg.centre == "language")


def _new_manifest(cfg: BuildConfig, corpus: Corpus, encoder: Encoder, n: int) -> Manifest:
    from emsearch import __version__

    stat = corpus.path.stat()
    return Manifest(
        emsearch=__version__, created=_now(),
        model=ModelRecord(id=encoder.model_id, path=str(Path(cfg.model).resolve()) if cfg.model else None,
                          dim=encoder.dim, max_len=encoder.config.max_len, format=encoder.info.get("format")),
        input=InputRecord(path=str(corpus.path.resolve()), format=corpus.format, bytes=stat.st_size,
                          mtime_ns=stat.st_mtime_ns),
        build=BuildRecord(text_column=cfg.text_column, lang_column=cfg.lang_column, id_column=corpus.id_column,
                          lang=corpus.fixed_lang, shard_size=cfg.shard_size),
        counts=Counts(rows=n))


def _same_build(a: Manifest, b: Manifest) -> bool:
    return a.input == b.input and a.model.id == b.model.id and a.build == b.build


def _prepare(out: Path, new: Manifest, overwrite: bool, say) -> Manifest:
    """The manifest to continue from: the existing one (same build: resume), or `new` in a fresh directory."""
    try:
        old = mf.load(out)
    except ManifestError:
        if not overwrite:
            raise
        old = None
        corrupt = True
    else:
        corrupt = False
    if old is None and not corrupt:
        if out.exists() and (not out.is_dir() or any(p.name != LOCK for p in out.iterdir())):
            raise BuildError(f"{out} exists and is not an emsearch index; choose another --out or --name")
        out.mkdir(parents=True, exist_ok=True)
        mf.save(out, new)
        return new
    if old is not None:
        if not overwrite and _same_build(old, new):
            if not old.complete:
                say(f"resuming the build in {out}: {len(old.shards)} shard(s) already encoded")
            return old
        same_path = old.input.path == new.input.path
        same_model = old.model.id == new.model.id
        restart = same_path and not old.complete and same_model and old.build == new.build  # an unfinished
        # build whose input file was since fixed: nothing to keep
        what = "an index" if old.complete else "an unfinished build"
        if not overwrite and not restart:
            if same_path and same_model:
                changed = [k for k in ("bytes", "mtime_ns") if getattr(old.input, k) != getattr(new.input, k)] + \
                          [k for k, v in vars(new.build).items() if getattr(old.build, k) != v]
                raise BuildError(f"{out} holds {what} of an older version of this input, or with other settings "
                                 f"({', '.join(changed)} differ); rerun with the same settings, or pass --overwrite")
            raise BuildError(f"{out} holds {what} of {old.input.path} (model {old.model.id}); "
                             "choose another --name or --out, or pass --overwrite to replace it")
        if not overwrite:
            say(f"{new.input.path} changed since the unfinished build in {out}: starting over")
        mf.save(out, replace(old, complete=False))  # never leave a complete-looking manifest over half-deleted files
    for part in mf.PARTS:
        shutil.rmtree(out / part, ignore_errors=True)
    mf.save(out, new)
    return new
