"""Mining benchmarks: N×N throughput through a real index, and the F1 that ANN candidates lose on the dev task.

    nice -n 10 python benchmarks/mining.py                           # N = 100k, and de-en of ../shared/data/dev/mining
    python benchmarks/mining.py --n 1000000 --skip-dev               # the 1M×1M run (hours on 2 cores)
    python benchmarks/mining.py --skip-throughput --pairs de-en,fr-en,ru-en,zh-en --model runs/default/model

throughput  An index of 2N synthetic vectors (see vector_index.py): N "deu" sentences and N "eng" ones, each
            "eng" vector a noisy copy of one "deu" vector (cosine ~0.9), shuffled. `emsearch.search.mine.mine_indexes`
            then searches both directions through the index's IVF-PQ (every language restriction larger than
            the exact-scan limit goes through a FAISS selector) and mines with the ratio margin, mode max.
            Reported: sentences/s (2N / wall time) and the share of true pairs recovered.
dev F1      For each BUCC-style pair of the dev folder: both files encoded into one real index forced to IVF-PQ
            (OPQ64,IVF{nlist},PQ64 with nlist by the builder's 8·√N rule; nprobe calibrated by the builder) and
            mined with its ANN candidates, against exact kNN over the same stored vectors. Reported: best F1 of
            each, their difference in F1 points (target < 0.5), and the ANN F1 at the exact run's threshold.
            Needs a trained model (--model, else the default model) and the dev folder; skipped cleanly without.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_index import build_vector_index, centres, mixture, model_for, unit  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev" / "mining"


def throughput(n: int, dim: int, model: str, work: Path, console: Console, factory: str | None) -> dict:
    from emsearch.index import Index
    from emsearch.search.mine import MineConfig, mine_indexes

    rng = np.random.default_rng(3)
    src = mixture(n, centres(max(1, n // 100), dim), seed=4)
    order = rng.permutation(n)  # eng row n + j holds the translation of deu row order[j]
    tgt = unit(src[order] + 0.03 * rng.standard_normal(src.shape, dtype=np.float32))
    out = work / f"mining-{n}-{dim}"
    t0 = time.perf_counter()
    build_vector_index(np.concatenate([src, tgt]), ["deu"] * n + ["eng"] * n, out, model, index_factory=factory,
                       console=console)
    build_s = time.perf_counter() - t0
    del src, tgt
    with Index.open(out, model=model) as index:
        t0 = time.perf_counter()
        pairs, nx, ny, _ = mine_indexes(index, index, MineConfig("deu", "eng"), console=console)
        seconds = time.perf_counter() - t0
        factory, nprobe = index.manifest.index.params.factory, index.manifest.index.nprobe
    truth = np.empty(n, dtype=np.int64)
    truth[order] = n + np.arange(n)
    recovered = int((truth[pairs.src] == pairs.tgt).sum())
    return {"n": n, "factory": factory, "nprobe": nprobe, "build_s": round(build_s, 1), "mine_s": round(seconds, 1),
            "sentences_per_s": round((nx + ny) / seconds, 1), "pairs": len(pairs),
            "true_pairs_recovered": round(recovered / n, 4)}


def ivfpq_factory(n: int, dim: int) -> str:
    """What the builder would choose for a large corpus, scaled to n: nlist ≈ 8·√n, 39·nlist training points."""
    nlist = 1 << round(math.log2(8 * math.sqrt(n)))
    while nlist > 16 and 39 * nlist > n:
        nlist //= 2
    m = min(64, dim // 4)
    return f"OPQ{m},IVF{nlist},PQ{m}"


def dev_pair(folder: Path, pair: str, model: str, work: Path, console: Console, factory: str | None) -> dict:
    import emsearch.index.reader as index_module
    from emsearch.index.build import BuildConfig, build_index
    from emsearch.encoder import Encoder
    from emsearch.search.bucc import best_f1, point_at, read_bucc
    from emsearch.index import Index
    from emsearch.languages import normalize_lang
    from emsearch.search.mine import MineConfig, mine_indexes
    from emsearch.index.exact import exact_knn
    from emsearch.search.margin import MinedPairs, mine

    data = read_bucc(folder, pair)
    src_lang, tgt_lang = (normalize_lang(x) for x in pair.split("-"))
    nx, ny = len(data.src_ids), len(data.tgt_ids)
    corpus = work / f"dev-{pair}.parquet"
    if not corpus.is_file():  # kept: the build (and its encoded shards) is reused while the input is unchanged
        pq.write_table(pa.table({"id": data.src_ids + data.tgt_ids, "lang": [src_lang] * nx + [tgt_lang] * ny,
                                 "text": data.src_texts + data.tgt_texts}), corpus)
    factory = factory or ivfpq_factory(nx + ny, Encoder.load(model).dim)
    out = work / f"dev-{pair}-{Path(model).name}"
    t0 = time.perf_counter()
    build_index(BuildConfig(input=str(corpus), out=str(out), model=model, id_column="id", index_factory=factory),
                console=console)
    build_s = time.perf_counter() - t0
    with Index.open(out, model=model) as index:
        x_rows, y_rows = index.rows_of_lang(src_lang), index.rows_of_lang(tgt_lang)
        x, y = index.embeddings(x_rows), index.embeddings(y_rows)
        exact = mine(*exact_knn(x, y, 4), *exact_knn(y, x, 4))
        exact_pairs = MinedPairs(x_rows[exact.src], y_rows[exact.tgt] - nx, exact.score)
        # force the approximate path for the language restriction too (the dev sides are small enough to scan)
        limit, index_module.EXACT_SUBSET_ROWS = index_module.EXACT_SUBSET_ROWS, 0
        try:
            t0 = time.perf_counter()
            ann, _, _, _ = mine_indexes(index, index, MineConfig(src_lang, tgt_lang))
            mine_s = time.perf_counter() - t0
        finally:
            index_module.EXACT_SUBSET_ROWS = limit
        ann_pairs = MinedPairs(ann.src, ann.tgt - nx, ann.score)
        nprobe = index.manifest.index.nprobe
    best_exact, best_ann = best_f1(data, exact_pairs), best_f1(data, ann_pairs)
    return {"pair": pair, "sentences": nx + ny, "factory": factory, "nprobe": nprobe, "build_s": round(build_s, 1),
            "mine_s": round(mine_s, 1), "f1_exact": round(best_exact.f1, 4), "f1_ann": round(best_ann.f1, 4),
            "f1_lost_points": round(100 * (best_exact.f1 - best_ann.f1), 2),
            "threshold_exact": round(best_exact.threshold, 4), "threshold_ann": round(best_ann.threshold, 4),
            "f1_ann_at_exact_threshold": round(point_at(data, ann_pairs, best_exact.threshold).f1, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="sentences per side for the throughput run")
    ap.add_argument("--dim", type=int, default=256, help="vector dimension of the throughput run")
    ap.add_argument("--model", default=None, help="model bundle; default: the default model")
    ap.add_argument("--dev", type=Path, default=DEV, help="BUCC-style dev folder")
    ap.add_argument("--pairs", default="de-en", help="dev pairs, comma-separated")
    ap.add_argument("--index-factory", default=None, help="faiss factory string for both runs; default: the "
                                                          "builder's choice (throughput), the 8·√N rule (dev)")
    ap.add_argument("--skip-throughput", action="store_true", help="only the dev F1")
    ap.add_argument("--skip-dev", action="store_true", help="only the throughput")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "emsearch-bench",
                    help="where indexes are built and kept between runs")
    args = ap.parse_args()
    console = Console(stderr=True)
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict = {"benchmark": "mining"}
    if not args.skip_throughput:
        result["throughput"] = throughput(args.n, args.dim, model_for(args.model, args.dim), args.work, console,
                                          args.index_factory)
    if not args.skip_dev:
        from emsearch.encoder import DEFAULT_MODEL_DIR

        model = args.model or (str(DEFAULT_MODEL_DIR) if (DEFAULT_MODEL_DIR / "config.json").is_file() else None)
        if not args.dev.is_dir():
            console.print(f"dev F1 skipped: no dev folder at {args.dev}")
        elif model is None:
            console.print("dev F1 skipped: no trained model (pass --model PATH; there is no default model yet)")
        else:
            result["dev"] = [dev_pair(args.dev, p.strip(), model, args.work, console, args.index_factory)
                             for p in args.pairs.split(",")]
            result["model"] = model
    out = Console()
    if "throughput" in result:
        t = result["throughput"]
        table = Table(title=f"mining {t['n']:,} × {t['n']:,} ({t['factory']}, nprobe {t['nprobe']}, ratio margin, max)")
        for name in ("build s", "mine s", "sentences/s", "pairs", "true pairs recovered"):
            table.add_column(name, justify="right")
        table.add_row(f"{t['build_s']:.0f}", f"{t['mine_s']:.1f}", f"{t['sentences_per_s']:,.0f}", f"{t['pairs']:,}",
                      f"{t['true_pairs_recovered']:.4f}")
        out.print(table)
    if result.get("dev"):
        table = Table(title="dev mining: best F1, exact kNN vs ANN candidates (ratio margin, max, k=4)")
        for name in ("pair", "index", "nprobe", "F1 exact", "F1 ANN", "lost (points)", "F1 ANN @ exact thr"):
            table.add_column(name, justify="left" if name in ("pair", "index") else "right")
        for d in result["dev"]:
            table.add_row(d["pair"], d["factory"], str(d["nprobe"]), f"{d['f1_exact']:.4f}", f"{d['f1_ann']:.4f}",
                          f"{d['f1_lost_points']:.2f}", f"{d['f1_ann_at_exact_threshold']:.4f}")
        out.print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
