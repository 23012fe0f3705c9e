"""Recall@10 of the built IVF-PQ index against exact search, over nprobe, with per-query latency (and a plot).

    nice -n 10 python benchmarks/index_recall.py                     # 200k synthetic clustered vectors
    python benchmarks/index_recall.py --model M --rows 100000         # real sentence embeddings (../shared text)

The index is built by the product (`build_index`: automatic choice, training, exact re-ranking of candidates
against the fp16 vectors, nprobe calibrated at build time for recall@10 ≥ 0.95 on stored vectors). Queries are
held out: vectors (or sentences) not in the index, from the same distribution. Ground truth is exact inner
product over the stored fp16 vectors. For each nprobe the curve gives recall@10 (set overlap with the exact
top 10) and p50 latency of single-query searches, with and without the re-ranking step (the bare PQ ranking
read from the same FAISS files). Writes benchmarks/results/index_recall.png; prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build_index import SHARED, vector_encoder  # noqa: E402


def overlap_recall(I: np.ndarray, I_true: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(I, I_true)]))


def p50_ms(fn, xq: np.ndarray) -> tuple[float, np.ndarray]:
    times, found = [], []
    for i in range(len(xq)):
        t0 = time.perf_counter()
        found.append(fn(xq[i : i + 1]))
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000), np.concatenate(found)


def sentence_vectors(model: str, n: int, work: Path) -> np.ndarray:
    """n sentences of ../shared/data, encoded once and cached under `work`."""
    cache = work / f"sentences-{n}-{Path(model).resolve().name}.npy"
    if cache.is_file():
        return np.load(cache)
    from emsearch.encoder import Encoder

    texts: list[str] = []
    files = sorted(SHARED.glob("*.parquet"))
    for f in files:
        texts += pq.read_table(f, columns=["text"]).column("text").to_pylist()[: -(-n // len(files))]
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))[:n]]
    x = Encoder.load(model).encode(texts, progress=True)
    np.save(cache, x)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="vectors in the index")
    ap.add_argument("--queries", type=int, default=300, help="held-out queries")
    ap.add_argument("--model", default=None, help="encode real sentences with this model (else synthetic vectors)")
    ap.add_argument("--index-factory", default=None, help="override the automatic choice (needed below 100k rows)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "emsearch-bench-recall",
                    help="where the index is built")
    ap.add_argument("--threads", type=int, default=1, help="FAISS threads (1: per-query latency without OpenMP waits)")
    ap.add_argument("--plot", type=Path, default=HERE / "results" / "index_recall.png", help="PNG to write")
    args = ap.parse_args()
    from vector_index import model_for


    from emsearch.index.build import BuildConfig, build_index
    from emsearch.index import Index

    args.work.mkdir(parents=True, exist_ok=True)
    model = model_for(args.model)
    n, nq = args.rows, args.queries
    if args.model:  # real embeddings: the index holds the first n, the queries are the next nq
        encoder = lookup_encoder(model, sentence_vectors(model, n + nq, args.work))
        source = f"sentences of {SHARED} encoded by {Path(model).name}"
    else:
        encoder = vector_encoder(model)
        source = "synthetic clustered unit vectors"
    corpus = args.work / f"corpus-{n}.parquet"
    texts = [f"r{i}" for i in range(n)]
    pq.write_table(pa.table({"id": texts, "lang": ["eng"] * n, "text": texts}), corpus)
    out = args.work / f"index-{n}-{'model' if args.model else 'synthetic'}"
    console = Console(stderr=True)
    build_index(BuildConfig(input=str(corpus), out=str(out), model=model, id_column="id", window_rows=65536,
                            index_factory=args.index_factory, overwrite=True), console=console, encoder=encoder)
    xq = encoder.encode([f"r{n + i}" for i in range(nq)])  # held out: never added to the index

    faiss.omp_set_num_threads(args.threads)  # after the build, which uses every core
    with Index.open(out, model=model) as index:
        info = index.manifest.index
        if info.params.kind != "ivf":
            raise SystemExit(f"{info.params.factory} is not an IVF index: use --rows ≥ 100000 or --index-factory")
        xq = index.vectors_of(xq)
        stored = index.embeddings(np.arange(n))
        _, I_true = faiss.knn(xq, stored, 10, metric=faiss.METRIC_INNER_PRODUCT)
        del stored
        groups = [faiss.read_index(str(out / g.file)) for g in info.groups]
        curve = []
        nprobe = 1
        while nprobe <= min(info.params.nlist, 1024):
            ms, I = p50_ms(lambda q, p=nprobe: index.search_vectors(q, 10, nprobe=p)[1], xq)
            ms_pq, I_pq = p50_ms(lambda q, p=nprobe: _bare(groups, q, p), xq)
            curve.append({"nprobe": nprobe, "recall_at_10": round(overlap_recall(I, I_true), 4), "p50_ms": round(ms, 3),
                          "pq_only_recall_at_10": round(overlap_recall(I_pq, I_true), 4), "pq_only_p50_ms": round(ms_pq, 3)})
            console.print(curve[-1])
            if curve[-1]["recall_at_10"] >= 0.999 or nprobe >= 256:
                break
            nprobe *= 2
        default = info.nprobe
        ms, I = p50_ms(lambda q: index.search_vectors(q, 10)[1], xq)
    result = {
        "benchmark": "index_recall", "rows": n, "queries": nq, "source": source, "factory": info.params.factory,
        "rerank": info.rerank, "default_nprobe": default, "recall_at_10_default": round(overlap_recall(I, I_true), 4),
        "p50_ms_default": round(ms, 3), "calibration": [vars(c) for c in info.calibration], "curve": curve,
        "threads": faiss.omp_get_max_threads(), "plot": str(args.plot),
    }
    table = Table(title=f"{n:,} vectors, {result['factory']}, re-rank {result['rerank']}, default nprobe {default}")
    for col in ("nprobe", "recall@10", "p50 ms", "PQ-only recall@10", "PQ-only p50 ms"):
        table.add_column(col, justify="right")
    for c in curve:
        mark = " *" if c["nprobe"] == default else ""
        table.add_row(f"{c['nprobe']}{mark}", f"{c['recall_at_10']:.3f}", f"{c['p50_ms']:.2f}",
                      f"{c['pq_only_recall_at_10']:.3f}", f"{c['pq_only_p50_ms']:.2f}")
    Console().print(table)
    _plot(curve, default, result, args.plot)
    print(json.dumps(result))


def lookup_encoder(model: str, vectors: np.ndarray):
    """The model's identity, but text 'r<i>' encodes to vectors[i] (precomputed sentence embeddings)."""
    from emsearch.encoder import Encoder

    class Lookup(Encoder):
        def encode(self, texts, batch_tokens: int = 16384, progress: bool = False) -> np.ndarray:
            return vectors[[int(t[1:]) for t in texts]]

    base = Encoder.load(model, device="cpu")
    return Lookup(base.model, base.tokenizer, base.info, "cpu")


def _bare(groups, xq: np.ndarray, nprobe: int) -> np.ndarray:
    """The FAISS ranking alone (PQ distances, no re-ranking), merged over the groups."""
    heap = faiss.ResultHeap(len(xq), 10, keep_max=True)
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    for g in groups:
        heap.add_result(*g.search(xq, 10, params=params))
    heap.finalize()
    return heap.I


def _plot(curve, default, result, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        Console(stderr=True).print("matplotlib is not installed (pip install matplotlib): no plot")
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, ms, label in (("recall_at_10", "p50_ms", f"re-ranked ({result['rerank']} candidates, exact)"),
                           ("pq_only_recall_at_10", "pq_only_p50_ms", "PQ ranking only")):
        ax.plot([c[ms] for c in curve], [c[key] for c in curve], marker="o", label=label)
        for c in curve:
            ax.annotate(str(c["nprobe"]), (c[ms], c[key]), textcoords="offset points", xytext=(3, -9), fontsize=7)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    d = next((c for c in curve if c["nprobe"] == default), None)
    if d:
        ax.plot([d["p50_ms"]], [d["recall_at_10"]], marker="*", markersize=14, color="red", label=f"default nprobe {default}")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per single query (ms, log scale)")
    ax.set_ylabel("recall@10 vs exact search")
    ax.set_title(f"{result['rows']:,} vectors, {result['factory']}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
