"""Build-index cost: encoding rows/s, index training and adding time, peak RSS, bytes per vector on disk.

    nice -n 10 python benchmarks/build_index.py                          # 100k sentences, the default model
    python benchmarks/build_index.py --rows 20000 --model runs/default/model
    nice -n 10 python benchmarks/build_index.py --vectors --rows 1000000 # the index side at 1M (no encoding)

Text mode builds from sentences of ../shared/data/parallel/*.parquet (all files, in turn), or, when that is
absent, from synthetic sentences of log-normal length. `--vectors` replaces the encoder by synthetic clustered
unit vectors generated per row (so nothing holds the corpus in memory): encoding a million sentences takes
hours on a 2-core CPU, but training, adding, calibration, the store and the shards are all measured for real.
Each build runs in a child process with `--overwrite`, so its peak RSS is its own. Prints a table and one
JSON line. The memory bound to compare peak RSS with: shard rows (texts) + 2·workers windows of vectors +
the training sample (train_rows × dim × 4) + the index codes; the fp32 vectors of the corpus are never held.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "parallel"
SPREAD, TOPICS = 0.055, 1000  # clustered synthetic vectors: cosine ~0.75 to their centre, ~0.56 to neighbours


def shared_corpus(rows: int, path: Path) -> str | None:
    """`rows` sentences taken in turn from every parallel-data file; None when ../shared is absent."""
    files = sorted(SHARED.glob("*.parquet")) if SHARED.is_dir() else []
    if not files:
        return None
    per_file = -(-rows // len(files))
    langs, texts, ids = [], [], []
    for f in files:
        got = 0
        for batch in pq.ParquetFile(f).iter_batches(batch_size=65536, columns=["lang", "text"]):
            d = batch.to_pydict()
            take = min(per_file - got, len(d["text"]))
            langs += d["lang"][:take]
            texts += d["text"][:take]
            ids += [f"{f.stem}:{got + i}" for i in range(take)]
            got += take
            if got >= per_file:
                break
    pq.write_table(pa.table({"id": ids[:rows], "lang": langs[:rows], "text": texts[:rows]}), path)
    return f"{len(files)} files of {SHARED}"


def synthetic_corpus(rows: int, path: Path) -> str:
    rng = np.random.default_rng(0)
    words = [f"w{i:05d}" for i in range(50_000)]
    lengths = np.clip(rng.lognormal(2.7, 0.5, rows).astype(int), 1, 200)  # ~15 words median, long tail
    texts = [" ".join(rng.choice(words, n)) for n in lengths]
    pq.write_table(pa.table({"id": [str(i) for i in range(rows)], "lang": ["eng"] * rows, "text": texts}), path)
    return "synthetic log-normal-length sentences"


def vector_encoder(model: str | None, seed: int = 0):
    """The real model's identity and tokenizer, but `encode` returns row r's synthetic vector for text 'r<r>'."""
    from emsearch.encoder import Encoder

    base = Encoder.load(model, device="cpu")
    dim = base.dim
    centres = np.random.default_rng(seed).standard_normal((TOPICS, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    class Synthetic(Encoder):
        def encode(self, texts, batch_tokens: int = 16384, progress: bool = False) -> np.ndarray:
            out = np.empty((len(texts), dim), dtype=np.float32)
            for i, t in enumerate(texts):
                rng = np.random.default_rng((seed, int(t[1:])))
                out[i] = centres[rng.integers(TOPICS)] + SPREAD * rng.standard_normal(dim, dtype=np.float32)
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    return Synthetic(base.model, base.tokenizer, base.info, "cpu")


def child(spec: dict) -> None:
    """Runs inside the measured process: one build."""
    from emsearch.index.build import BuildConfig, build_index

    cfg = BuildConfig(**spec["config"])
    encoder = vector_encoder(cfg.model) if spec["vectors"] else None
    build_index(cfg, console=Console(stderr=True), encoder=encoder)


def vectors_corpus(rows: int, path: Path) -> str:
    texts = [f"r{i}" for i in range(rows)]
    pq.write_table(pa.table({"id": texts, "lang": ["eng"] * rows, "text": texts}), path)
    return "synthetic clustered unit vectors (no encoding)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="corpus rows")
    ap.add_argument("--vectors", action="store_true", help="synthetic vectors instead of encoding text")
    ap.add_argument("--model", default=None, help="model bundle; default: the default model, else a stand-in")
    ap.add_argument("--workers", type=int, default=1, help="encoding processes")
    ap.add_argument("--shard-size", type=int, default=50_000, help="rows per embedding shard")
    ap.add_argument("--index-factory", default=None, help="override the automatic index choice")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "emsearch-bench-build",
                    help="where the corpus and the index are written")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vector_index import model_for  # the default model, else an untrained stand-in of the shipped shape

    model = model_for(args.model)
    args.work.mkdir(parents=True, exist_ok=True)
    mode = "vectors" if args.vectors else "text"
    corpus = args.work / f"corpus-{mode}-{args.rows}.parquet"
    source = (vectors_corpus(args.rows, corpus) if args.vectors
              else shared_corpus(args.rows, corpus) or synthetic_corpus(args.rows, corpus))
    out = args.work / f"index-{mode}-{args.rows}"
    config = dict(input=str(corpus), out=str(out), model=model, id_column="id", shard_size=args.shard_size,
                  workers=args.workers, index_factory=args.index_factory, overwrite=True,
                  window_rows=65536 if args.vectors else 4096)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", json.dumps({"config": config, "vectors": args.vectors})],
                   check=True)
    wall = time.perf_counter() - t0
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

    from emsearch.index.manifest import facts as index_facts
    from emsearch.index.manifest import load

    manifest = load(out)
    facts = index_facts(out, manifest)
    params, info, rows = manifest.index.params, manifest.index, manifest.counts.rows
    sec = {**manifest.seconds, **info.seconds}
    result = {
        "benchmark": "build_index", "mode": mode, "rows": rows, "source": source, "model": Path(model).name,
        "dim": manifest.model.dim, "workers": args.workers, "shard_size": args.shard_size,
        "factory": params.factory, "nprobe": info.nprobe,
        "rerank": info.rerank, "calibrated_recall_at_10": info.recall_at_10,
        "encode_s": sec.get("encode"), "encode_rows_per_s": round(rows / sec["encode"], 1),
        "train_s": sec.get("train", 0.0), "train_rows": params.train_rows, "add_s": sec.get("add", 0.0),
        "calibrate_s": sec.get("calibrate", 0.0), "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak_rss / 2**20, 1), "peak_rss_mib_after": manifest.peak_rss_mib, "fp32_vectors_mib": round(rows * facts["model"]["dim"] * 4 / 2**20, 1),
        "disk_bytes": facts["bytes"], "bytes_per_vector": facts["bytes_per_vector"],
        "bytes_per_vector_by_part": {k: round(v / rows, 1) for k, v in facts["bytes"].items() if k != "total"},
    }
    table = Table(title=f"build-index: {rows:,} rows ({mode}), {params['factory']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in [
        ("encode + store (rows/s)", f"{result['encode_rows_per_s']:,.0f}"),
        ("encode stage (s)", f"{result['encode_s']:,.1f}"),
        (f"train on {params['train_rows']:,} vectors (s)", f"{result['train_s']:,.1f}"),
        ("add (s)", f"{result['add_s']:,.1f}"),
        (f"calibrate → nprobe {info['nprobe']}, re-rank {info.get('rerank')} (s)", f"{result['calibrate_s']:,.1f}"),
        ("wall (s)", f"{wall:,.1f}"),
        ("peak RSS (MiB)", f"{result['peak_rss_mib']:,.0f}"),
    ] + [(f"  peak RSS after {k} (MiB)", f"{v:,}") for k, v in result["peak_rss_mib_after"].items()] + [
        ("corpus as fp32 vectors (MiB)", f"{result['fp32_vectors_mib']:,.0f}"),
        ("bytes / vector on disk", f"{result['bytes_per_vector']:,.1f}"),
    ] + [(f"  {k} (bytes/vector)", f"{v:,.1f}") for k, v in result["bytes_per_vector_by_part"].items()]:
        table.add_row(label, value)
    Console().print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
