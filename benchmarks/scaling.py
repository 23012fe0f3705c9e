"""Scaling: time, peak memory and disk of each stage (encode, store, train, add, mine) at growing corpus sizes.

    nice -n 19 python benchmarks/scaling.py                                   # N = 100k, 1M, 10M (1.5–2 h here)
    python benchmarks/scaling.py --sizes 20000,50000                          # a quick end-to-end check
    python benchmarks/scaling.py --sizes 1000000 --stages encode,mine         # some stages only

Every stage runs in its own child process, so its peak RSS (the child's ru_maxrss) is its own. At each size N:

encode  the shipped model (`emsearch/models/default`) encoding N real sentences of ../shared/data/parallel/*.parquet
        (the `text` and `eng` columns of every file in turn, cycled when N exceeds them), in windows of 65,536
        converted to fp16 as the builder does; reported: encoding seconds (reading excluded) and sentences/s.
store   the real builder (`emsearch.index.build.build_index`) on N rows, N/2 "deu" and N/2 "eng", with encoding
        answered by generated vectors (below): scan, LMDB sentence store, fp16 shards, per-language rows, the
        corpus mean. Built with `--index-factory Flat` so that it stops there; the seconds spent generating
        vectors are subtracted.
train   the builder's stage 4 (`emsearch.index.build_faiss.build_faiss`) as it chooses the index for N rows,
        stopped once the trained index is written (what a build killed there would leave, and resumes from).
add     the same function resumed: the groups populated, nprobe calibrated.
mine    `emsearch.search.mine.mine_indexes` deu × eng (N/2 × N/2: all N sentences; ratio margin, mode max,
        k = 4, both directions through IVF-PQ with the language selector, re-ranked); run only up to
        --mine-full-max rows. Reported with the share of true pairs recovered.
knn     the kNN of mining on a sample of --knn-sample rows of each side against the whole index (both
        directions, `knn_chunk` as `mine_indexes` calls it), at the calibrated nprobe (or --nprobe) and at
        --fixed-nprobe;
        the full kNN time is this per-query time × N (extrapolated).
select  the global part of mining on arrays of the full size (N/2 rows a side): margins, the pooled sort and
        the one-to-one selection (`emsearch.search.margin.mine`), the null margins and the threshold fit
        (`emsearch.search.threshold`). The kNN results are synthesised: each row's scores drawn from the knn
        sample's rows, its first neighbour a translation, the others random rows.
refile  (not in the default list) group 0 of a built IVF index (`--keep`) populated again with the trained index
        as this code leaves it, against the group as built: the share of vectors filed in their nearest list,
        recall@10 within the group at nprobe 1, 16, 128 (100 candidates re-scored), seconds to populate.
coarse  (not in the default list) a built IVF index's coarse quantizer on 20,000 stored vectors: µs a vector and
        the share put in their nearest list, exact (batched matrix product) and HNSW at breadths 16 to 256.
The knn stage also reports where a query's time goes (`breakdown_us_per_query`: coarse assignment, the FAISS
search of every group, re-scoring 100 candidates, and the groups searched one by one as before).

Vectors: unit vectors around N/200 random centres (spread 0.055: cosine ~0.75 to the centre), "eng" row N/2 + j the
noisy copy (cosine ~0.9) of "deu" row perm(j), the permutation within blocks of 50,000; generated per block, so
nothing holds the corpus. Prints a table and one JSON line; each stage's JSON line is printed as it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_index import centres, unit  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "parallel"
STAGES = ("encode", "store", "train", "add", "mine", "knn", "select", "refile", "coarse")
BLOCK = 50_000  # rows per generated block (a multiple of it is a shard: windows never straddle two blocks)
SHARD = 100_000
SPREAD, COPY_NOISE = 0.055, 0.03
K = 4


# ---------------------------------------------------------------------------------------------- synthetic vectors

class PairVectors:
    """Row r < P: a "deu" vector; row P + j: the noisy copy of deu row `truth(j)`. Deterministic per block."""

    def __init__(self, pairs: int, dim: int, seed: int = 0):
        self.P, self.dim, self.seed = pairs, dim, seed
        self.centres = centres(max(1, pairs // 100), dim, seed)
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.seconds = 0.0

    def _block_rows(self, b: int) -> int:
        return min(self.P, (b + 1) * BLOCK) - b * BLOCK

    def perm(self, b: int) -> np.ndarray:
        return np.random.default_rng((self.seed, 2, b)).permutation(self._block_rows(b))

    def truth(self, j: np.ndarray) -> np.ndarray:
        """The deu row of which eng row P + j is the copy."""
        j = np.asarray(j, dtype=np.int64)
        out = np.empty_like(j)
        for b in np.unique(j // BLOCK):
            sel = j // BLOCK == b
            out[sel] = b * BLOCK + self.perm(int(b))[j[sel] - b * BLOCK]
        return out

    def block(self, side: str, b: int) -> np.ndarray:
        key = (side, b)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        rows = self._block_rows(b)
        if side == "deu":
            rng = np.random.default_rng((self.seed, 1, b))
            pick = rng.integers(0, len(self.centres), size=rows)
            x = unit(self.centres[pick] + SPREAD * rng.standard_normal((rows, self.dim), dtype=np.float32))
        else:
            rng = np.random.default_rng((self.seed, 3, b))
            x = self.block("deu", b)[self.perm(b)]
            x = unit(x + COPY_NOISE * rng.standard_normal((rows, self.dim), dtype=np.float32))
        self._cache[key] = x
        while len(self._cache) > 3:
            self._cache.popitem(last=False)
        return x

    def rows(self, rows: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        eng = rows >= self.P
        local = np.where(eng, rows - self.P, rows)
        for side, mask in (("deu", ~eng), ("eng", eng)):
            for b in np.unique(local[mask] // BLOCK):
                sel = mask & (local // BLOCK == b)
                out[sel] = self.block(side, int(b))[local[sel] - b * BLOCK]
        self.seconds += time.perf_counter() - t0
        return out


def pair_encoder(model: str, gen: PairVectors):
    """The model's identity, but `encode(["r12", ...])` answers the generated vectors of those rows."""
    from emsearch.encoder import Encoder

    class Generated(Encoder):
        def encode(self, texts, batch_tokens: int = 16384, progress: bool = False) -> np.ndarray:
            return gen.rows(np.fromiter((int(t[1:]) for t in texts), dtype=np.int64, count=len(texts)))

    base = Encoder.load(model, device="cpu")
    return Generated(base.model, base.tokenizer, base.info, "cpu")


def write_corpus(n: int, path: Path) -> None:
    """ids and texts "r<row>", the first half deu, the second eng; written in slices (no list of N strings)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("lang", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, n, 1 << 20):
            r = np.arange(lo, min(n, lo + (1 << 20)))
            texts = pa.array(np.char.add("r", r.astype(str)).tolist(), pa.string())
            langs = pa.array(np.where(r < n // 2, "deu", "eng").tolist(), pa.string())
            writer.write_table(pa.table({"id": texts, "lang": langs, "text": texts}, schema=schema))


# ------------------------------------------------------------------------------------------------- the children

def peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_parts() -> dict:
    """Resident memory at the end of the stage, anonymous (the process's own) and file-backed (pages of memory-
    mapped files: fp16 shards, LMDB; the kernel drops them under pressure), MiB; ru_maxrss counts both."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    except OSError:
        return {}
    return {f"{k.lower()}_mib_end": round(int(status[k].split()[0]) / 1024, 1) for k in ("RssAnon", "RssFile")
            if k in status}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def stage_encode(n: int, work: Path, args: dict) -> dict:
    import pyarrow.parquet as pq
    import torch

    from emsearch.encoder import Encoder

    torch.set_num_threads(args["threads"])
    encoder = Encoder.load(None)
    files = sorted(SHARED.glob("*.parquet"))
    if not files:
        raise SystemExit(f"encode: no parquet files in {SHARED}")

    def sentences():
        while True:
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=65536, columns=["text", "eng"]):
                    for column in ("text", "eng"):
                        yield [t for t in batch.column(column).to_pylist() if t]

    done = 0
    encode_s = chars = 0.0
    t0 = time.perf_counter()
    window: list[str] = []
    source = sentences()
    while done < n:
        while len(window) < min(65536, n - done):
            window += next(source)
        texts, window = window[: min(65536, n - done)], window[min(65536, n - done):]
        t1 = time.perf_counter()
        encoder.encode(texts).astype(np.float16)
        encode_s += time.perf_counter() - t1
        chars += sum(len(t) for t in texts)
        done += len(texts)
    return {"seconds": round(encode_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "per_s": round(n / encode_s, 1), "mean_chars": round(chars / n, 1), "model": encoder.model_id}


def index_paths(n: int, work: Path) -> tuple[Path, Path]:
    return work / f"corpus-{n}.parquet", work / f"index-{n}"


def requested_ivf():
    from emsearch.index.build_config import BuildConfig
    from emsearch.index.manifest import Requested

    cfg = BuildConfig(input="", out="")
    return Requested(factory=None, max_memory=cfg.max_index_memory, merge=False, centre=True, by_language=False)


def stage_store(n: int, work: Path, args: dict) -> dict:
    from emsearch.index.build import BuildConfig, build_index
    from emsearch.index.manifest import load

    corpus, out = index_paths(n, work)
    t0 = time.perf_counter()
    write_corpus(n, corpus)
    corpus_s = time.perf_counter() - t0
    gen = PairVectors(n // 2, 256)
    cfg = BuildConfig(input=str(corpus), out=str(out), model=args["model"], id_column="id", shard_size=SHARD,
                      window_rows=BLOCK, index_factory="Flat", overwrite=True)
    t0 = time.perf_counter()
    build_index(cfg, encoder=pair_encoder(args["model"], gen))
    wall = time.perf_counter() - t0
    m = load(out)
    sec = {**m.seconds, **m.index.seconds}
    return {"seconds": round(wall - gen.seconds, 1), "generate_s": round(gen.seconds, 1),
            "scan_s": sec.get("scan"), "store_and_shards_s": round(sec["encode"] - gen.seconds, 1),
            "centre_s": sec.get("centre"), "corpus_write_s": round(corpus_s, 1),
            "disk_bytes": dir_bytes(out / "store") + dir_bytes(out / "embeddings"),
            "disk": {"store": dir_bytes(out / "store"), "embeddings": dir_bytes(out / "embeddings")}}


class _Trained(Exception):
    pass


def stage_train(n: int, work: Path, args: dict) -> dict:
    import emsearch.index.build_faiss as bf
    from emsearch.index.manifest import load

    _, out = index_paths(n, work)

    def stop(*a, **k):
        raise _Trained

    bf._populate_groups = stop  # the build as if killed right after writing the trained index
    t0 = time.perf_counter()
    try:
        bf.build_faiss(out, load(out), requested_ivf())
    except _Trained:
        pass
    wall = time.perf_counter() - t0
    m = load(out)
    p = m.index.params
    return {"seconds": m.index.seconds.get("train", 0.0), "centre_s": m.index.seconds.get("centre"), "wall_s": round(wall, 1),
            "factory": p.factory, "nlist": p.nlist, "train_rows": p.train_rows,
            "disk_bytes": (out / "faiss" / "trained.index").stat().st_size if p.kind != "flat" else 0}


def stage_add(n: int, work: Path, args: dict) -> dict:
    from dataclasses import replace

    from emsearch.index.build_faiss import build_faiss
    from emsearch.index.manifest import load, save

    _, out = index_paths(n, work)
    t0 = time.perf_counter()
    m = build_faiss(out, load(out), requested_ivf())
    save(out, replace(m, complete=True))
    wall = time.perf_counter() - t0
    info = m.index
    groups = sum(g.bytes for g in info.groups)
    return {"seconds": info.seconds.get("add", 0.0), "calibrate_s": info.seconds.get("calibrate", 0.0), "wall_s": round(wall, 1),
            "peak_after_add_mib": m.peak_rss_mib.get("add"), "groups": len(info.groups), "nprobe": info.nprobe,
            "rerank": info.rerank, "recall_at_10": info.recall_at_10, "disk_bytes": groups,
            "index_total_bytes": dir_bytes(out)}


def _open(n: int, work: Path, args: dict):
    from emsearch.index.reader import Index

    _, out = index_paths(n, work)
    t0 = time.perf_counter()
    index = Index.open(out, model=args["model"])
    return index, time.perf_counter() - t0


def stage_mine(n: int, work: Path, args: dict) -> dict:
    from emsearch.search.mine import MineConfig, mine_indexes

    index, open_s = _open(n, work, args)
    with index:
        t0 = time.perf_counter()
        pairs, nx, ny, _ = mine_indexes(index, index, MineConfig("deu", "eng", k=K))
        seconds = time.perf_counter() - t0
        nprobe = index.manifest.index.nprobe
    gen = PairVectors(n // 2, 256)
    eng = pairs.tgt >= n // 2
    recovered = int((gen.truth(pairs.tgt[eng] - n // 2) == pairs.src[eng]).sum())
    return {"seconds": round(seconds, 1), "open_s": round(open_s, 1), "per_s": round((nx + ny) / seconds, 1),
            "nprobe": nprobe, "pairs": len(pairs), "true_pairs_recovered": round(recovered / (n // 2), 4),
            "knn_arrays_mib": round((nx + ny) * (K + 1) * (4 + 8) / 2**20, 1)}


def stage_knn(n: int, work: Path, args: dict) -> dict:
    from emsearch.search.knn import knn_chunk
    from emsearch.search.mine import MineConfig, chunk_bounds

    index, open_s = _open(n, work, args)
    gen = PairVectors(n // 2, 256)
    out: dict = {"open_s": round(open_s, 1)}
    with index:
        x_rows, y_rows = index.rows_of_lang("deu"), index.rows_of_lang("eng")
        s = min(args["knn_sample"], len(x_rows))
        rng = np.random.default_rng(5)
        sample = {"fwd": np.sort(rng.choice(len(x_rows), s, replace=False)),
                  "bwd": np.sort(rng.choice(len(y_rows), s, replace=False))}
        calibrated = index.manifest.index.nprobe
        runs = [("calibrated", args.get("nprobe"), s)]
        if args["fixed_nprobe"]:
            runs.append((f"nprobe{args['fixed_nprobe']}", args["fixed_nprobe"], max(1, s // 4)))
        for label, nprobe, count in runs:
            cfg = MineConfig("deu", "eng", k=K, nprobe=nprobe)
            seconds, top1, D_all = 0.0, 0, []
            for direction, (q_rows, base_lang, base_rows) in (("fwd", (x_rows, "eng", y_rows)),
                                                              ("bwd", (y_rows, "deu", x_rows))):
                pick = sample[direction][:count] if count == s else np.sort(
                    rng.choice(sample[direction], count, replace=False))
                for lo, hi in chunk_bounds(len(pick), cfg.chunk):
                    t0 = time.perf_counter()
                    D, I = knn_chunk(index.embeddings(q_rows[pick[lo:hi]]), index, base_lang, base_rows, cfg)
                    seconds += time.perf_counter() - t0
                    D_all.append(D)
                    if direction == "fwd":  # the translation of deu row x is eng row P + j with truth(j) == x
                        top1 += int((gen.truth(np.maximum(I[:, 0], 0)) == pick[lo:hi]).sum())
                    else:
                        top1 += int((gen.truth(pick[lo:hi]) == I[:, 0]).sum())
            per_query = seconds / (2 * count)
            out[label] = {"nprobe": nprobe or calibrated, "queries": 2 * count, "seconds": round(seconds, 1),
                          "us_per_query": round(1e6 * per_query, 1), "top1_translation": round(top1 / (2 * count), 4),
                          "full_knn_s_extrapolated": round(per_query * n, 1)}
            if label == "calibrated":
                np.save(work / f"knn-D-{n}.npy", np.concatenate(D_all))
        out["breakdown_us_per_query"] = breakdown(index, x_rows, args.get("nprobe") or calibrated)
    out["seconds"] = out["calibrated"]["full_knn_s_extrapolated"]
    out["extrapolated"] = True
    return out


def breakdown(index, x_rows: np.ndarray, nprobe: int, queries: int = 4000) -> dict:
    """Where a deu → eng query's time goes, with 100 candidates re-scored: µs per query (batched, 2nd of 2 runs)."""
    from emsearch.index import ivf

    if index.manifest.index.params.kind != "ivf":
        return {}
    xq = index.embeddings(np.sort(np.random.default_rng(11).choice(x_rows, min(queries, len(x_rows)), replace=False)))
    restriction = index._restriction(["eng"])
    params = index._search_params(restriction.selector if restriction is not None else None, nprobe)
    groups, t = index._faiss, {}
    for _ in range(2):
        if hasattr(ivf, "coarse_assign") and isinstance(groups, ivf.IVFGroups):
            t0 = time.perf_counter()
            ivf.coarse_assign(groups, xq, nprobe)
            t["coarse"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, I = ivf.search_faiss(groups, xq, 100, params)
        t["search_faiss"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ivf.rescore(xq, I, 5, index._emb)
        t["rescore_100"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for g in groups:
            g.search(xq, 100, params=params)
        t["each_group_searched_whole"] = time.perf_counter() - t0
    return {"groups": len(groups), "nprobe": nprobe, **{k: round(1e6 * v / len(xq), 1) for k, v in t.items()}}


def stage_select(n: int, work: Path, args: dict) -> dict:
    from emsearch.search.margin import mine
    from emsearch.search.threshold import choose_threshold, null_margins

    P = n // 2
    rng = np.random.default_rng(7)
    path = work / f"knn-D-{n}.npy"
    if path.is_file():
        D_sample = np.load(path)
        source = f"rows of the knn sample ({len(D_sample):,})"
    else:
        D_sample = -np.sort(-rng.uniform(0.3, 0.95, (4096, K + 1)).astype(np.float32), axis=1)
        source = "uniform scores (no knn sample)"
    sigma = rng.permutation(P)
    arrays = {}
    t0 = time.perf_counter()
    for direction, first in (("xy", sigma), ("yx", np.argsort(sigma))):
        D = D_sample[rng.integers(0, len(D_sample), P)]
        I = rng.integers(0, P, (P, K + 1))
        I[:, 0] = first
        arrays[direction] = (D, I)
    make_s = time.perf_counter() - t0
    base_mib = peak_mib()
    (D_xy, I_xy), (D_yx, I_yx) = arrays["xy"], arrays["yx"]
    t0 = time.perf_counter()
    pairs = mine(D_xy[:, :K], I_xy[:, :K], D_yx[:, :K], I_yx[:, :K], margin="ratio", mode="max")
    margin_s = time.perf_counter() - t0
    margin_mib = peak_mib()
    t0 = time.perf_counter()
    choice = choose_threshold(pairs.score, null_margins(D_xy, I_xy, D_yx, I_yx, "ratio"), threshold=None,
                              how="benchmark")
    fit_s = time.perf_counter() - t0
    return {"seconds": round(margin_s + fit_s, 1), "margin_and_one_to_one_s": round(margin_s, 1),
            "null_and_fit_s": round(fit_s, 1), "synthesise_s": round(make_s, 1), "pairs": len(pairs),
            "scores_from": source, "knn_arrays_mib": round(base_mib, 1), "peak_after_margin_mib": margin_mib,
            "fit_pairs": choice.fit.pairs if choice.fit else 0}


def stage_coarse(n: int, work: Path, args: dict) -> dict:
    """The trained index's coarse quantizer on 20,000 stored vectors: µs per vector and the share assigned to their
    nearest list, for an exact scan of the centroids (one batched matrix product) and HNSW at several breadths."""
    import faiss

    from emsearch.index.manifest import load
    from emsearch.index.shards import ShardedEmbeddings

    _, out = index_paths(n, work)
    m = load(out)
    emb = ShardedEmbeddings(out, m.shards, m.model.dim, centre=m.index.centre)
    trained = faiss.read_index(str(out / m.index.trained.file))
    q = faiss.downcast_index(faiss.extract_index_ivf(trained).quantizer)
    chain = faiss.downcast_index(trained)
    x = emb.take(np.sort(np.random.default_rng(13).choice(emb.ntotal, 20_000, replace=False)))
    xt = faiss.downcast_VectorTransform(chain.chain.at(0)).apply(x) if isinstance(chain, faiss.IndexPreTransform) else x
    centroids = q.reconstruct_n(0, q.ntotal)
    t0 = time.perf_counter()
    nearest = (xt @ centroids.T).argmax(1)
    result = {"nlist": q.ntotal, "flat_us": round(1e6 * (time.perf_counter() - t0) / len(xt), 1)}
    if isinstance(q, faiss.IndexHNSW):
        for ef in (16, 64, 128, 256):
            q.hnsw.efSearch = ef
            t0 = time.perf_counter()
            _, I = q.search(xt, 1)
            result[f"hnsw{ef}"] = {"us": round(1e6 * (time.perf_counter() - t0) / len(xt), 1),
                                   "nearest_list": round(float((I[:, 0] == nearest).mean()), 4)}
    result["seconds"] = 0.0
    return result


def stage_refile(n: int, work: Path, args: dict) -> dict:
    """Group 0 of the built index populated again from its trained index as this code trains it now, against the
    group as built: vectors filed in their nearest list, recall@10 within the group, seconds to populate."""
    import faiss

    from emsearch.index.exact import exact_knn
    from emsearch.index.faiss_io import populate
    from emsearch.index.ivf import coarse_search_breadth, group_blocks, group_shards, recall_at_k, rescore
    from emsearch.index.manifest import load
    from emsearch.index.shards import ShardedEmbeddings

    _, out = index_paths(n, work)
    m = load(out)
    info = m.index
    emb = ShardedEmbeddings(out, m.shards, m.model.dim, centre=info.centre)
    group = group_shards(m.shards, info.params.group_rows)[0]
    rows = np.arange(group[0].start, group[-1].stop)
    trained = faiss.read_index(str(out / info.trained.file))
    as_built = faiss.read_index(str(out / info.groups[0].file))
    before_ef = faiss.downcast_index(faiss.extract_index_ivf(trained).quantizer).hnsw.efSearch
    coarse_search_breadth(trained)
    t0 = time.perf_counter()
    again = populate(faiss.clone_index(trained), group_blocks(emb, group))
    populate_s = time.perf_counter() - t0
    rng = np.random.default_rng(9)
    probe = np.sort(rng.choice(rows, 20_000, replace=False))
    ivf0 = faiss.extract_index_ivf(trained)
    q = faiss.downcast_index(ivf0.quantizer)
    xt = faiss.downcast_VectorTransform(faiss.downcast_index(trained).chain.at(0)).apply(emb.take(probe))
    nearest = (xt @ q.reconstruct_n(0, q.ntotal).T).argmax(1)
    out_d: dict = {"seconds": round(populate_s, 1), "rows": len(rows), "ef_search_as_built": before_ef,
                   "ef_search_now": q.hnsw.efSearch}
    queries = np.sort(rng.choice(rows, 256, replace=False))
    xq = emb.take(queries)
    base = emb.take(rows)
    D_true, _ = exact_knn(xq, base, 11)
    del base
    for label, index in (("as_built", as_built), ("now", again)):
        ivf = faiss.extract_index_ivf(index)
        filed = np.full(n, -1, dtype=np.int64)
        for c in range(ivf.nlist):
            size = ivf.invlists.list_size(c)
            if size:
                ids = np.array(faiss.rev_swig_ptr(ivf.invlists.get_ids(c), size), dtype=np.int64)
                filed[ids] = c
        recall = {}
        for nprobe in (1, 16, 128):
            _, I = index.search(xq, 100, params=faiss.SearchParametersIVF(nprobe=nprobe))
            D, _ = rescore(xq, I, 11, emb)
            recall[f"nprobe{nprobe}"] = round(recall_at_k(D[:, 1:], D_true[:, 1:], 10), 4)  # self excluded
        out_d[label] = {"nearest_list": round(float((filed[probe] == nearest).mean()), 4), "recall_at_10": recall}
    return out_d


CHILDREN = {"encode": stage_encode, "store": stage_store, "train": stage_train, "add": stage_add,
            "mine": stage_mine, "knn": stage_knn, "select": stage_select, "refile": stage_refile,
            "coarse": stage_coarse}


def child(spec: dict) -> None:
    load_before = os.getloadavg()
    result = CHILDREN[spec["stage"]](spec["n"], Path(spec["work"]), spec["args"])
    result.update(stage=spec["stage"], n=spec["n"], peak_rss_mib=peak_mib(), **rss_parts(),
                  load_avg=[round(x, 2) for x in load_before], load_avg_end=[round(x, 2) for x in os.getloadavg()])
    Path(spec["result"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------------------- driver

def run_stage(stage: str, n: int, work: Path, args: dict) -> dict:
    result_path = work / f"result-{stage}-{n}.json"
    result_path.unlink(missing_ok=True)
    spec = {"stage": stage, "n": n, "work": str(work), "args": args, "result": str(result_path)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)])
    if proc.returncode != 0 or not result_path.is_file():
        return {"stage": stage, "n": n, "error": f"exit status {proc.returncode}"}
    result = json.loads(result_path.read_text())
    result["child_wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def slopes(results: list[dict], stage: str, key: str) -> list[float]:
    """log-log slope of `key` between consecutive sizes of one stage."""
    pts = sorted((r["n"], r[key]) for r in results if r.get("stage") == stage and r.get(key))
    return [round(float(np.log(b[1] / a[1]) / np.log(b[0] / a[0])), 2) for a, b in zip(pts, pts[1:])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000,10000000", help="corpus sizes N, comma-separated")
    ap.add_argument("--stages", default=",".join(STAGES[:-2]), help=f"stages to run, comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--work", type=Path, default=None,
                    help="where corpora and indexes are written (a new temporary directory by default); deleted "
                         "after the run unless --keep")
    ap.add_argument("--keep", action="store_true", help="keep --work (its indexes serve a later run's stages)")
    ap.add_argument("--mine-full-max", type=int, default=1_000_000, help="largest N mined in full (above it: knn "
                                                                        "and select only)")
    ap.add_argument("--knn-sample", type=int, default=20_000, help="query rows of each side in the knn stage")
    ap.add_argument("--fixed-nprobe", type=int, default=16, help="also time the knn at this nprobe (0: only the "
                                                                 "calibrated one)")
    ap.add_argument("--nprobe", type=int, default=None, help="the knn stage's main nprobe instead of the "
                                                              "calibrated one")
    ap.add_argument("--encode-max", type=int, default=10_000_000, help="largest N encoded (above it: not run)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for encoding")
    ap.add_argument("--model", default=None, help="model bundle the indexes record; default: the shipped model")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(json.loads(a.child))

    from vector_index import model_for

    sizes = [int(s) for s in a.sizes.split(",")]
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {', '.join(sorted(unknown))}")
    work = a.work or Path(tempfile.mkdtemp(prefix="emsearch-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    args = {"model": model_for(a.model), "knn_sample": a.knn_sample, "fixed_nprobe": a.fixed_nprobe,
            "threads": a.threads, "nprobe": a.nprobe}
    results: list[dict] = []
    try:
        for n in sizes:
            for stage in stages:
                if (stage == "mine" and n > a.mine_full_max) or (stage == "encode" and n > a.encode_max):
                    continue
                r = run_stage(stage, n, work, args)
                results.append(r)
                print(json.dumps(r), flush=True)
            if not a.keep:
                _, index = index_paths(n, work)
                shutil.rmtree(index, ignore_errors=True)
                for p in [*work.glob(f"*-{n}.parquet"), *work.glob(f"*-{n}.npy"), *work.glob(f"*-{n}.json")]:
                    p.unlink()
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = Table(title="scaling: seconds, peak RSS and disk per stage (each stage its own process)")
    for name in ("N", "stage", "seconds", "peak RSS MiB", "disk MiB", "load avg", "notes"):
        table.add_column(name, justify="left" if name in ("stage", "notes") else "right")
    for r in results:
        if "error" in r:
            table.add_row(f"{r['n']:,}", r["stage"], "failed", "", "", "", r["error"])
            continue
        note = {"encode": lambda: f"{r['per_s']:,.0f} sentences/s",
                "store": lambda: f"+{r['generate_s']} s generating vectors, centre {r['centre_s']} s",
                "train": lambda: f"{r['factory']} on {r['train_rows']:,}",
                "add": lambda: f"{r['groups']} groups, nprobe {r['nprobe']}, calibrate {r['calibrate_s']} s",
                "mine": lambda: f"{r['per_s']:,.0f} sentences/s, recovered {r['true_pairs_recovered']}",
                "knn": lambda: "extrapolated: " + ", ".join(
                    f"{v['us_per_query']:,.0f} µs/query at nprobe {v['nprobe']}" for k, v in r.items()
                    if isinstance(v, dict) and "us_per_query" in v),
                "select": lambda: f"margin+1:1 {r['margin_and_one_to_one_s']} s, fit {r['null_and_fit_s']} s",
                "refile": lambda: f"group 0 in nearest list {r['as_built']['nearest_list']} → {r['now']['nearest_list']}",
                "coarse": lambda: f"flat {r['flat_us']} µs/vector; " + ", ".join(
                    f"{k} {v['us']} µs {v['nearest_list']}" for k, v in r.items() if k.startswith("hnsw"))}
        disk = r.get("disk_bytes")
        table.add_row(f"{r['n']:,}", r["stage"], f"{r['seconds']:,.1f}", f"{r['peak_rss_mib']:,.0f}",
                      "" if disk is None else f"{disk / 2**20:,.0f}", f"{r['load_avg'][0]:.2f}", note[r["stage"]]())
    Console(width=200).print(table)
    growth = {s: {"time": slopes(results, s, "seconds"), "rss": slopes(results, s, "peak_rss_mib")} for s in stages}
    print(json.dumps({"benchmark": "scaling", "sizes": sizes, "results": results, "growth_exponents": growth}))


if __name__ == "__main__":
    main()
