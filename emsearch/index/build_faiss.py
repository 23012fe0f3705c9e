"""Stage 4 of the build: the corpus mean (with centring), then choose the FAISS index, train it on a sample,
populate its groups, calibrate nprobe and re-ranking from the shards, merge (with --merge). Each finished step is
saved in the manifest, so a rerun redoes only what is missing; a rerun with other index options redoes this stage
alone.

Centring: the index compares every vector minus the mean of the corpus's vectors, at unit length again (the
stored fp16 shards stay the model's vectors; `ShardedEmbeddings.centred` is the one place that does it). A bag
of sub-word embeddings gives every sentence of a corpus a shared component (its domain and language mix); removed,
cosines and margins measure what sets sentences apart (on the mining dev set: +0.7 to +1.6 best F1 on de, fr, ru).
Centred per language (`--centre language`), each row goes on the mean of its own language's rows instead (both
are recorded, the corpus mean for queries of no named language): what one language's sentences share no longer
pulls a query towards its own language (FLORES dev retrieval eng↔X: 72.8% → 75.3%).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console

from emsearch.atomic import file_matches, file_sha256
from emsearch.index.choice import IndexParams, choose_index
from emsearch.index.faiss_io import load_faiss, merge_ondisk, populate, write_index
from emsearch.index.ivf import (CALIBRATION_TARGET, calibrate, group_blocks, group_shards, rescore, search_faiss,
                                train_index)
from emsearch.index.manifest import (CalibrationPoint, FileRecord, GroupRecord, IndexRecord, Manifest, MergedRecord,
                                     Requested, save)
from emsearch.index.shards import LanguageCentres, Shard, ShardedEmbeddings, row_languages
from emsearch.index.store import Store
from emsearch.progress import bar, stage


class _Recorder:
    """The manifest as this stage advances; `index(...)` changes its index record and saves it."""

    def __init__(self, out: Path, manifest: Manifest):
        self.out, self.manifest = out, manifest

    @property
    def info(self) -> IndexRecord:
        assert self.manifest.index is not None  # set before any step runs
        return self.manifest.index

    def index(self, *, peak: str | None = None, seconds: dict[str, float] | None = None, **changes) -> None:
        info = replace(self.info, **changes)
        if seconds:
            info = replace(info, seconds={**info.seconds, **{k: round(v, 2) for k, v in seconds.items()}})
        self.manifest = replace(self.manifest, index=info)
        if peak:
            self.manifest = self.manifest.with_peak(peak)
        save(self.out, self.manifest)


def build_faiss(out: Path, manifest: Manifest, requested: Requested, *, ray: bool = False,
                console: Console | None = None) -> Manifest:
    """Run (or finish) stage 4 over the shards recorded in `manifest`; returns the manifest with its index."""
    n, dim, shards = manifest.counts.rows, manifest.model.dim, list(manifest.shards)
    params = choose_index(n, dim, requested.max_memory, requested.factory)
    rec = _Recorder(out, manifest)
    if manifest.index is None or manifest.index.requested != requested or manifest.index.params != params:
        shutil.rmtree(out / "faiss", ignore_errors=True)
        rec.manifest = replace(manifest, index=IndexRecord(requested, params, rerank=params.rerank))
        save(out, rec.manifest)
    by_lang = _centre(rec, requested, shards, dim, console)
    if params.kind == "flat":
        return rec.manifest  # the exact index is the shards themselves, loaded into IndexFlatIP when opened
    (out / "faiss").mkdir(exist_ok=True)
    # passes over every row: one shard resident at a time
    emb = ShardedEmbeddings(out, shards, dim, mmap=False, centre=rec.info.centre, by_lang=by_lang)
    trained = _trained(rec, params, emb, console)
    _populate_groups(rec, params, emb, trained, shards, ray, console)
    if rec.info.nprobe is None and params.kind == "ivf":
        _calibrate(rec, params, emb, console)
    if requested.merge and params.kind == "ivf" and not rec.info.merged:
        t0 = time.perf_counter()
        with stage(console, "merging the groups into one on-disk index"):
            merged = merge_ondisk(out, rec.info.trained.file, [g.file for g in rec.info.groups])
        record = MergedRecord(**merged, sha256=file_sha256(out / merged["file"]),
                              data_sha256=file_sha256(out / merged["data"]))
        rec.index(merged=record, seconds={"merge": time.perf_counter() - t0}, peak="merge")
        for g in rec.info.groups:  # folded into the merged index; their records stay for `info`
            (out / g.file).unlink(missing_ok=True)
    elif requested.merge and params.kind != "ivf" and console is not None:
        console.print(f"--merge: a {params.factory} index has no inverted lists to merge; kept as is")
    return rec.manifest


def _centre(rec: _Recorder, requested: Requested, shards: Sequence[Shard], dim: int,
            console) -> LanguageCentres | None:
    """Record the corpus mean (and, centring per language, each language's mean) unless recorded; returns the
    per-language centres the rows go into FAISS with (None when not centred per language)."""
    if not requested.centre:
        return None
    t0 = time.perf_counter()
    if not requested.by_language:
        if rec.info.centre is None:
            with stage(console, "centring: the mean of every vector"):
                mean = ShardedEmbeddings(rec.out, shards, dim, mmap=False).mean()
            rec.index(centre=tuple(mean.tolist()), seconds={"centre": time.perf_counter() - t0})
        return None
    n = rec.manifest.counts.rows
    store = Store.open(rec.out / "store")
    try:
        if rec.info.centre is None or rec.info.language_centres is None:
            langs = tuple(sorted(rec.manifest.counts.languages))
            of_row = row_languages(langs, store.rows_of_lang, n)
            with stage(console, f"centring: the mean of each language's vectors ({len(langs)})"):
                means = ShardedEmbeddings(rec.out, shards, dim, mmap=False).mean(of_row)
            counts = np.bincount(of_row, minlength=len(langs)).astype(np.float64)
            mean = counts @ means / max(n, 1)  # the corpus mean, from the same pass
            rec.index(centre=tuple(mean.astype(np.float32).tolist()),
                      language_centres={lang: tuple(m.tolist()) for lang, m in zip(langs, means)},
                      seconds={"centre": time.perf_counter() - t0})
        return LanguageCentres.recorded(rec.info.language_centres, store.rows_of_lang, n)
    finally:
        store.close()


def _trained(rec: _Recorder, params: IndexParams, emb: ShardedEmbeddings, console) -> faiss.Index:
    """The trained, empty index: read back when whole, else trained (again). A retrained index that differs from
    the recorded one (training on another machine or thread count need not repeat bit for bit) no longer fits
    the groups populated from it: they, the merged index and the calibration are redone."""
    name = "faiss/trained.index"
    path = rec.out / name
    before = rec.info.trained
    if before and file_matches(path, before.sha256):
        return faiss.read_index(str(path))
    t0 = time.perf_counter()
    with stage(console, f"training {params.factory} on {min(params.train_rows, emb.ntotal):,} vectors"):
        index, gpu = train_index(params, emb)
    write_index(index, path)
    trained = FileRecord(name, file_sha256(path))
    rec.index(trained=trained, gpu=gpu, seconds={"train": time.perf_counter() - t0}, peak="train")
    if before and before.sha256 != trained.sha256:
        rec.index(groups=(), merged=None, nprobe=None, calibration=None, recall_at_10=None)
    return index


def _populate_groups(rec: _Recorder, params: IndexParams, emb: ShardedEmbeddings, trained: faiss.Index,
                     shards: Sequence[Shard], ray: bool, console) -> None:
    """Populate every group not already recorded whole (or folded into a merged index that is still there)."""
    out = rec.out
    recorded = {g.file: g for g in rec.info.groups}
    todo = []
    for gi, group in enumerate(group_shards(shards, params.group_rows)):
        name = f"faiss/group-{gi:04d}.index"
        g = recorded.get(name)
        if not (g and (g.start, g.stop) == (group[0].start, group[-1].stop) and file_matches(out / name, g.sha256)):
            todo.append((name, group))
    merged = rec.info.merged
    if merged and file_matches(out / merged.file, merged.sha256) and file_matches(out / merged.data,
                                                                                   merged.data_sha256):
        todo = []  # the groups were merged (and deleted) before a crash
    elif merged:
        rec.index(merged=None)  # lost or damaged: repopulate the groups and merge again
    redo = {name for name, _ in todo}
    rec.index(groups=tuple(g for g in rec.info.groups if g.file not in redo))
    t0 = time.perf_counter()
    with bar(console, "adding to the index", sum(s.rows for _, grp in todo for s in grp)) as progress:
        for name, index in _populated(emb, trained, todo, ray):
            write_index(index, out / name)
            group = dict(todo)[name]
            record = GroupRecord(name, group[0].start, group[-1].stop, file_sha256(out / name),
                                 (out / name).stat().st_size)
            groups = tuple(sorted((*rec.info.groups, record), key=lambda g: g.start))
            rec.index(groups=groups, seconds={"add": rec.info.seconds.get("add", 0) + time.perf_counter() - t0},
                      peak="add")
            t0 = time.perf_counter()
            progress.advance(group[-1].stop - group[0].start)


def _populated(emb: ShardedEmbeddings, trained: faiss.Index, todo, ray: bool) -> Iterator[tuple[str, faiss.Index]]:
    """(file name, populated index) per group to do: here, or in Ray tasks."""
    if ray and todo:
        from emsearch.index import ray_runners

        serialized = faiss.serialize_index(trained)
        blocks = ([*group_blocks(emb, group)] for _, group in todo)
        for (name, _), data in zip(todo, ray_runners.populate_groups(serialized, blocks, in_flight=4)):
            yield name, faiss.deserialize_index(data)
        return
    for name, group in todo:
        yield name, populate(faiss.clone_index(trained), group_blocks(emb, group))


def _calibrate(rec: _Recorder, params: IndexParams, emb: ShardedEmbeddings, console) -> None:
    """The cheapest (nprobe, rerank) reaching recall@10 ≥ CALIBRATION_TARGET, searching the FAISS files just
    written the way `Index.search_vectors` does (candidates re-scored exactly against the shards)."""
    t0 = time.perf_counter()
    with stage(console, f"calibrating nprobe for recall@10 ≥ {CALIBRATION_TARGET}"):
        indexes = load_faiss(rec.out, rec.info, emb)

        def search(xq: np.ndarray, k: int, nprobe: int, rerank: int) -> tuple[np.ndarray, np.ndarray]:
            ivf = faiss.SearchParametersIVF(nprobe=min(nprobe, params.nlist))
            return rescore(xq, search_faiss(indexes, xq, max(k, rerank), ivf)[1], k, emb)

        nprobe, rerank, curve = calibrate(search, emb, params.nlist, params.rerank)
    recall = next(c["recall"] for c in curve if (c["nprobe"], c["rerank"]) == (nprobe, rerank))
    rec.index(nprobe=nprobe, rerank=rerank, calibration=tuple(CalibrationPoint(**c) for c in curve),
              recall_at_10=recall, seconds={"calibrate": time.perf_counter() - t0}, peak="calibrate")
    if recall < CALIBRATION_TARGET and console is not None:
        console.print(f"[yellow]warning:[/] recall@10 reaches only {recall:.3f} (nprobe {nprobe}, re-ranking "
                      f"{rerank}); for more, use a larger PQ or Flat (--index-factory)")
