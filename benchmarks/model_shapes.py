"""Dev accuracy of encoder shapes and recipes at equal training budgets: the measurement the default model is chosen by.

    python benchmarks/model_shapes.py --steps 600 --out benchmarks/results/model_shapes.jsonl
    python benchmarks/model_shapes.py --variants d256-v32k,d256-v32k-margin --tokenizer 32k=/tmp/tok32k.model
    python benchmarks/model_shapes.py --variants ablation-both,ablation-contrastive,ablation-xtr --tokenizer 64k=/tmp/tok64k.model
    python benchmarks/model_shapes.py --variants ablation-both,teacher-both --teacher-cache runs/teacher --tokenizer 64k=...
    python benchmarks/model_shapes.py --variants v128k-cov1-both,teacher-init-0.07 --teacher-cache runs/teacher
    python benchmarks/model_shapes.py --variants teacher-init-margin0.2,teacher-init-langs8 --teacher-cache runs/teacher
    python benchmarks/model_shapes.py --variants teacher-init-tok-alpha0.5,teacher-init-0.07 --teacher-cache runs/teacher --tokenizer alpha0.5=...

The pairs are read once and tokenized once per tokenizer (`shipped` is the default model's 128k vocabulary;
until 3485ef9 it was the one learnt from 400k sentences at alpha 0.3, which the figures measured before then used, and
until bfc369d the one learnt from 1.2M at alpha 0.5; others are named with --tokenizer NAME=PATH: the previous models' 64k and 32k ones are `git show
118666a:emsearch/models/default/tokenizer.model > /tmp/tok64k.model` and the same at a27a155). Each variant trains from scratch in this
process at a constant learning rate after warmup, for the same number of steps (--steps: figures that do not
depend on what else runs on the machine; the CPU minutes each took are reported beside them) or the same process
CPU time (--minutes), and is scored on FLORES dev (eng ↔ X, top-1, both directions) over the 9 languages with
≥ 20k training pairs and over every trained FLORES language, and by the best mining F1 on each pair of dev/mining
(the threshold-free figure: a variant's default threshold is set only when it ships). Prints a table and one JSON line per variant;
exits 0 with a message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from emsearch.config import PRESETS, TrainConfig
from emsearch.train.data import PairDataset, read_pairs
from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder
from emsearch.evaluate import retrieval_accuracy
from emsearch.search.bucc import bucc
from emsearch.model import EMSEncoder, EMSHeads
from emsearch.train.teacher_cache import TeacherVectors
from emsearch.train.token_table import load_piece_vectors, teacher_start
from emsearch.tokenizer import Tokenizer
from emsearch.train.loop import Run, step
from emsearch.train.trainee import Trainee, make_optimizers

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BIG9 = ("deu", "ces", "spa", "rus", "fra", "tur", "epo", "hun", "fin")  # ≥ 20k training pairs each
MINING_PAIRS = ("de-en", "fr-en", "ru-en", "zh-en")
CJK = ("zho_Hans", "zho_Hant", "yue_Hant", "jpn_Jpan", "kor_Hang")  # the scripts a tokenizer's coverage decides

# Every variant starts from this run: cpu-bag's shape, contrastive only, 1024-pair batches, lr 3e-3 (SparseAdam).
BASE = dict(lr=3e-3, warmup=100, min_lr_ratio=1.0, temperature=0.05, margin=0.0, alpha=0.5, xtr_weight=0.0,
            xtr_pairs=0, contrastive_weight=1.0, batch_pairs=1024)
SHIPPED = dict(margin=0.1)  # the shipped recipe's loss on top of BASE (its batches are 2048 pairs; XTR per variant)
TEACHER_START = {**SHIPPED, "xtr_weight": 0.2, "xtr_pairs": 64, "teacher_init": 0.07}  # the shipped recipe at 600 steps
# name → (model shape overrides, training overrides, tokenizer name)
VARIANTS: dict[str, tuple[dict, dict, str]] = {
    "d256-v32k": ({}, {}, "32k"),
    "d256-v32k-margin": ({}, {"margin": 0.1}, "32k"),
    "d256-v32k-langs8": ({}, {"batch_langs": 8}, "32k"),
    "d256-v32k-xtr": ({}, {"xtr_weight": 0.2, "xtr_pairs": 128}, "32k"),
    "d256-v64k": ({}, {}, "64k"),
    # The objective ablation on the shipped shape and recipe.
    "ablation-both": ({}, {**SHIPPED, "xtr_weight": 0.2, "xtr_pairs": 64}, "64k"),
    "ablation-contrastive": ({}, SHIPPED, "64k"),
    "ablation-xtr": ({}, {**SHIPPED, "xtr_weight": 1.0, "xtr_pairs": 256, "contrastive_weight": 0.0}, "64k"),
    # Tokenizers with full character coverage (CJK characters as pieces, not bytes): 64k pieces (--tokenizer
    # 64k-cov1=PATH, trained like the shipped one with vocab_size 64000), or the shipped 128k.
    "v64k-cov1-both": ({}, {**SHIPPED, "xtr_weight": 0.2, "xtr_pairs": 64}, "64k-cov1"),
    "v128k-cov1-both": ({}, {**SHIPPED, "xtr_weight": 0.2, "xtr_pairs": 64}, "shipped"),
    # The objective ablation on the shipped tokenizer (with v128k-cov1-both).
    "v128k-cov1-contrastive": ({}, SHIPPED, "shipped"),
    "v128k-cov1-xtr": ({}, {**SHIPPED, "xtr_weight": 1.0, "xtr_pairs": 256, "contrastive_weight": 0.0}, "shipped"),
    # The teacher stage (needs --teacher-cache): distillation next to both EMS objectives, or next to XTR alone.
    "teacher-both": ({}, {**SHIPPED, "xtr_weight": 0.2, "xtr_pairs": 64, "distill_weight": 1.0}, "64k"),
    "teacher-both-w5": ({}, {**SHIPPED, "xtr_weight": 0.2, "xtr_pairs": 64, "distill_weight": 5.0}, "64k"),
    "teacher-xtr": ({}, {**SHIPPED, "xtr_weight": 1.0, "xtr_pairs": 256, "contrastive_weight": 0.0,
                         "distill_weight": 1.0}, "64k"),
    # Teacher start (needs --teacher-cache with the shipped tokenizer's piece vectors: cache-teacher --pieces).
    # At the random start's spread (0.02 per coordinate), a trained table's (0.07), or wider.
    **{f"teacher-init-{std}": ({}, {**TEACHER_START, "teacher_init": std}, "shipped") for std in (0.02, 0.07, 0.15)},
    # Levers for mining on the teacher start: hard negatives (batches of 8 same-language runs), a wider margin, a
    # sharper softmax, more XTR (the other side's bag of pieces predicted on 256 pairs of each batch).
    **{f"teacher-init-{name}": ({}, {**TEACHER_START, **change}, "shipped") for name, change in {
        "langs8": {"batch_langs": 8}, "margin0.2": {"margin": 0.2}, "margin0.3": {"margin": 0.3},
        "margin0.4": {"margin": 0.4}, "t0.03": {"temperature": 0.03}, "xtr0.5": {"xtr_weight": 0.5, "xtr_pairs": 256},
    }.items()},
    # The tokenizer's sample on the teacher start, against the shipped tokenizer (teacher-init-0.07: 1.2M sentences
    # at alpha 0.7): --tokenizer alpha0.3=PATH (`git show 09e0390:emsearch/models/default/tokenizer.model`, 400k
    # sentences at alpha 0.3) and --tokenizer alpha0.5=PATH (the same at bfc369d: 1.2M at alpha 0.5, the sampling
    # training uses). A higher alpha gives English, the side every pair shares, and the large languages more of it.
    **{f"teacher-init-tok-{name}": ({}, TEACHER_START, name) for name in ("alpha0.3", "alpha0.5")},
}
TEACHER_OPTIONS = ("distill_weight", "teacher_init")


def train_variant(data: PairDataset, tokenizer: Tokenizer, shape: dict, overrides: dict, *, steps: int,
                  cpu_seconds: float, threads: int, teacher_cache: Path | None) -> tuple[Run, float, float]:
    """Train one variant from scratch until `steps` steps or `cpu_seconds` of process CPU time, whichever is set."""
    model = replace(PRESETS["cpu-bag"], **shape, vocab_size=tokenizer.vocab_size, n_langs=len(data.languages),
                    teacher_dim=data.teacher.dim if data.teacher else 0)
    cfg = TrainConfig(model=model, steps=steps or 10**9, threads=threads, **{**BASE, **overrides})
    torch.manual_seed(cfg.seed)
    trainee = Trainee(EMSEncoder(model), EMSHeads(model), data.languages.index("eng"))
    if cfg.teacher_init:
        teacher_start(trainee.encoder, load_piece_vectors(teacher_cache, tokenizer.path), cfg.teacher_init)
    run = Run(cfg, Path("runs/model-shapes"), data, tokenizer, trainee, trainee, make_optimizers(trainee, cfg),
              torch.device("cpu"), 0, 1, [], print)
    stream = data.stream(seed=cfg.seed, alpha=cfg.alpha, batch_tokens=cfg.batch_tokens,
                         batch_pairs=cfg.batch_pairs, batch_langs=cfg.batch_langs)
    trainee.train()
    start, wall = time.process_time(), time.time()
    losses: dict[str, float] = {}
    while run.state["step"] < steps if steps else time.process_time() - start < cpu_seconds:
        _, batch = next(stream)
        last = step(run, batch)
        losses = {k: losses.get(k, v.item()) * 0.98 + v.item() * 0.02 for k, v in last.items()}  # smoothed
        run.state["step"] += 1
        run.state["pairs"] += len(batch.src_lang)
    run.state["losses"] = {k: round(v, 4) for k, v in losses.items()}
    return run, time.process_time() - start, time.time() - wall


def score(run: Run, flores: Path, mining: Path) -> dict:
    encoder = Encoder(run.trainee.encoder, run.tokenizer, {"model_id": "benchmark"}, device="cpu")
    best_f1 = {pair: round(bucc(encoder, mining, pair).f1, 4) for pair in MINING_PAIRS}
    big = retrieval_accuracy(encoder, flores, langs=BIG9).average
    cjk = retrieval_accuracy(encoder, flores, langs=CJK).average
    trained = [lang for lang in run.data.counts if lang != "eng"]
    every = retrieval_accuracy(encoder, flores, langs=trained)
    return {"flores_big9": round(big, 4), "flores_trained": round(every.average, 4), "flores_cjk": round(cjk, 4),
            "flores_trained_langs": len(every.scores), "mining_best_f1": best_f1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="The shared data folder (parallel/, dev/).")
    ap.add_argument("--variants", default="d256-v64k,ablation-both,ablation-contrastive,ablation-xtr",
                    help=f"Comma-separated: {', '.join(VARIANTS)}.")
    ap.add_argument("--steps", type=int, default=600, help="Training steps per variant (0: use --minutes).")
    ap.add_argument("--minutes", type=float, default=5.0, help="CPU minutes per variant (process time), with --steps 0.")
    ap.add_argument("--tokenizer", action="append", default=[], metavar="NAME=PATH",
                    help="Another SentencePiece model for the variants that name it (e.g. 32k=/tmp/tok32k.model).")
    ap.add_argument("--teacher-cache", type=Path, default=None,
                    help="Teacher vectors (`emsearch cache-teacher`) for the teacher-* variants.")
    ap.add_argument("--threads", type=int, default=2, help="Torch CPU threads.")
    ap.add_argument("--out", type=Path, default=None, help="Append one JSON line per variant to this file.")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    tokenizers = {"shipped": DEFAULT_MODEL_DIR / "tokenizer.model",
                  **{k: Path(v) for k, v in (t.split("=", 1) for t in args.tokenizer)}}
    missing = sorted({VARIANTS[n][2] for n in names} - set(tokenizers))
    if missing:
        ap.error(f"no tokenizer named {', '.join(missing)}: pass --tokenizer NAME=PATH")
    if any(VARIANTS[n][1].get(k) for n in names for k in TEACHER_OPTIONS) and not args.teacher_cache:
        ap.error("the teacher variants need --teacher-cache FOLDER (made by `emsearch cache-teacher`)")
    parallel = sorted((args.data / "parallel").glob("*.parquet"))
    flores = args.data / "dev" / "retrieval" / "flores_dev.parquet"
    if not parallel or not flores.is_file():
        print(f"no training pairs or FLORES dev under {args.data}: nothing to measure")
        return 0
    torch.set_num_threads(args.threads)
    pairs = read_pairs(parallel)
    languages = sorted(set(pairs.lang) | {"eng"})
    distils = any(VARIANTS[n][1].get("distill_weight") for n in names)
    teacher = TeacherVectors.load(args.teacher_cache) if distils else None
    datasets: dict[str, tuple[PairDataset, Tokenizer]] = {}
    rows = []
    for name in names:
        shape, overrides, tok_name = VARIANTS[name]
        if tok_name not in datasets:
            tokenizer = Tokenizer(tokenizers[tok_name], PRESETS["cpu-bag"].max_len)
            datasets[tok_name] = PairDataset(pairs, tokenizer, languages, TrainConfig.max_length_ratio,
                                             teacher), tokenizer
        run, cpu, wall = train_variant(*datasets[tok_name], shape, overrides, steps=args.steps,
                                       cpu_seconds=args.minutes * 60, threads=args.threads,
                                       teacher_cache=args.teacher_cache)
        row = {"variant": name, "cpu_minutes": round(cpu / 60, 2), "wall_minutes": round(wall / 60, 2),
               "steps": run.state["step"], "pairs_seen": run.state["pairs"],
               **score(run, flores, args.data / "dev" / "mining"), "losses": run.state["losses"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
    print(f"\n{'variant':<22} {'CPU min':>8} {'steps':>7} {'pairs seen':>11} {'FLORES big 9':>13} {'all trained':>12} "
          f"{'CJK':>6}  mining best F1 de/fr/ru/zh")
    for r in rows:
        print(f"{r['variant']:<22} {r['cpu_minutes']:>8.2f} {r['steps']:>7,} {r['pairs_seen']:>11,} "
              f"{r['flores_big9']:>13.1%} {r['flores_trained']:>12.1%} {r['flores_cjk']:>6.1%}  "
              + " / ".join(f"{100 * f:.1f}" for f in r["mining_best_f1"].values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
