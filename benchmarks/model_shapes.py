"""Dev accuracy per CPU-minute of encoder shapes and recipes: the measurement the default model is chosen by.

    python benchmarks/model_shapes.py --minutes 3 --out benchmarks/results/model_shapes.jsonl
    python benchmarks/model_shapes.py --variants bag-d512-weighted,bag-d512-weighted-xtr --minutes 10

The pairs are read and tokenized once (the shipped tokenizer unless --tokenizer), then each variant trains from
scratch in this process for the same CPU time (process CPU seconds, so another job on the machine costs a
variant steps, not figures) at a constant learning rate after warmup, and is scored on FLORES dev (eng ↔ X,
top-1, both directions) over the 9 languages with ≥ 20k training pairs and over every trained FLORES language.
Prints a table and one JSON line per variant; exits 0 with a message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from emsearch.config import PRESETS, ModelConfig, TrainConfig
from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder
from emsearch.evaluate import retrieval_accuracy
from emsearch.model import EMSEncoder, EMSHeads
from emsearch.train import Run, Trainee, make_optimizers, setup, step

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BIG9 = ("deu", "ces", "spa", "rus", "fra", "tur", "epo", "hun", "fin")  # ≥ 20k training pairs each

BAG = PRESETS["cpu-bag"]
# name → (model shape, training overrides). Contrastive loss at temperature 0.05 unless said otherwise.
VARIANTS: dict[str, tuple[ModelConfig, dict]] = {
    "bag-d256-mean": (replace(BAG, dim=256, pooling="mean"), {"batch_pairs": 1024, "xtr_weight": 0.0}),
    "bag-d256-weighted": (replace(BAG, dim=256), {"batch_pairs": 1024, "xtr_weight": 0.0}),
    "bag-d512-weighted": (BAG, {"batch_pairs": 2048, "xtr_weight": 0.0}),
    "bag-d512-weighted-xtr": (BAG, {"batch_pairs": 2048, "xtr_weight": 0.2, "xtr_pairs": 256}),
    "bag-d512-weighted-b4096": (BAG, {"batch_pairs": 4096, "xtr_weight": 0.0}),
    "bag-d512-weighted-alpha0.3": (BAG, {"batch_pairs": 2048, "xtr_weight": 0.0, "alpha": 0.3}),
}


def train_variant(base: Run, shape: ModelConfig, overrides: dict, cpu_seconds: float) -> tuple[Run, int, float]:
    """Train one variant from scratch on the shared data until it has used `cpu_seconds` of process CPU time."""
    cfg = replace(base.cfg, **overrides)
    shape = replace(shape, vocab_size=base.cfg.model.vocab_size, n_langs=base.cfg.model.n_langs)
    cfg = replace(cfg, model=shape)
    torch.manual_seed(cfg.seed)
    eng = base.data.languages.index("eng")
    trainee = Trainee(EMSEncoder(shape), EMSHeads(shape), eng)
    run = replace(base, cfg=cfg, trainee=trainee, model=trainee, opts=make_optimizers(trainee, cfg),
                  state={"step": 0, "position": [0, 0], "elapsed": 0.0, "pairs": 0})
    stream = run.data.stream(seed=cfg.seed, alpha=cfg.alpha, batch_tokens=cfg.batch_tokens,
                             batch_pairs=cfg.batch_pairs)
    trainee.train()
    start, wall = time.process_time(), time.time()
    while time.process_time() - start < cpu_seconds:
        _, batch = next(stream)
        step(run, batch)
        run.state["step"] += 1
        run.state["pairs"] += len(batch.src_lang)
    return run, run.state["pairs"], time.time() - wall


def score(run: Run, flores: Path) -> dict:
    encoder = Encoder(run.trainee.encoder, run.tokenizer, {"model_id": "benchmark"}, device="cpu")
    big = retrieval_accuracy(encoder, flores, langs=BIG9).average
    trained = [lang for lang in run.data.counts if lang != "eng"]
    every = retrieval_accuracy(encoder, flores, langs=trained)
    return {"flores_big9": round(big, 4), "flores_trained": round(every.average, 4),
            "flores_trained_langs": len(every.scores)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="The shared data folder (parallel/, dev/).")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated: {', '.join(VARIANTS)}.")
    ap.add_argument("--minutes", type=float, default=3.0, help="CPU minutes of training per variant (process time).")
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_MODEL_DIR / "tokenizer.model",
                    help="SentencePiece model to tokenize with (default: the shipped one).")
    ap.add_argument("--threads", type=int, default=2, help="Torch CPU threads.")
    ap.add_argument("--out", type=Path, default=None, help="Append one JSON line per variant to this file.")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    parallel = sorted((args.data / "parallel").glob("*.parquet"))
    flores = args.data / "dev" / "retrieval" / "flores_dev.parquet"
    if not parallel or not flores.is_file():
        print(f"no training pairs or FLORES dev under {args.data}: nothing to measure")
        return 0
    base_cfg = TrainConfig(data=tuple(map(str, parallel)), out="runs/model-shapes", model=BAG,
                           tokenizer_path=str(args.tokenizer), lr=3e-3, warmup=100, min_lr_ratio=1.0,
                           temperature=0.05, alpha=0.5, threads=args.threads, xtr_weight=0.0,
                           contrastive_weight=1.0, batch_pairs=2048)
    base = setup(base_cfg, resume=False)
    rows = []
    for name in names:
        shape, overrides = VARIANTS[name]
        run, pairs, wall = train_variant(base, shape, overrides, args.minutes * 60)
        row = {"variant": name, "cpu_minutes": args.minutes, "wall_minutes": round(wall / 60, 2),
               "steps": run.state["step"], "pairs_seen": pairs, **score(run, flores)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
    print(f"\n{'variant':<30} {'CPU min':>8} {'steps':>7} {'pairs seen':>11} {'FLORES big 9':>13} {'all trained':>12}")
    for r in rows:
        print(f"{r['variant']:<30} {r['cpu_minutes']:>8.1f} {r['steps']:>7,} {r['pairs_seen']:>11,} "
              f"{r['flores_big9']:>13.1%} {r['flores_trained']:>12.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
