"""Training throughput (pairs/s, tokens/s) per model preset on this machine, and its model-FLOP utilisation.

    python benchmarks/train_throughput.py                                   # tiny, cpu-fast, cpu-small, gpu-base
    python benchmarks/train_throughput.py --presets cpu-small --steps 20 --threads 2
    python benchmarks/train_throughput.py --data ../shared/data/parallel/tatoeba_challenge.parquet \
        --tokenizer runs/default/tokenizer.model --pairs 20000

Batches are the real training batches (`PairDataset`: language-sampled, longest-first, cut by --batch-tokens
per side), either of synthetic token ids whose lengths are drawn from --min-len..--max-len (no data needed) or
of real pairs tokenized with a real SentencePiece model. A step is what `emsearch.train` does per batch:
forward of both sides, XTR + contrastive losses, backward, gradient clipping, AdamW (+ SparseAdam for the
embedding tables).

Model FLOPs of a step with B pairs padded to width T (both sides share T in training):
    encoder: 3 × forward_flops_per_token(cfg, T) × 2B·T          (forward + backward ≈ 3 × forward)
    heads:   3 × 2 × 2B × (XTR: (d + lang_dim)·d + d·P; projection: d·d + d·proj_dim), P = the batch vocabulary
MFU = model FLOP/s ÷ the machine's fp32 matmul FLOP/s, measured right after every step (a 2048² product), so
a machine shared with other work loads both equally; the figure is the median of the per-step ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_flops import matmul_flops  # noqa: E402

from emsearch.config import PRESETS, ModelConfig, TrainConfig  # noqa: E402
from emsearch.train.data import PairDataset, ParallelPairs, read_pairs  # noqa: E402
from emsearch.model import EMSEncoder, EMSHeads, forward_flops_per_token  # noqa: E402
from emsearch.tokenizer import EOS_ID, Tokenizer  # noqa: E402
from emsearch.train.losses import batch_vocabulary  # noqa: E402
from emsearch.train.trainee import Trainee, make_optimizers  # noqa: E402

LANGS = ["ces", "cmn", "deu", "fra", "jpn", "rus", "spa", "tur"]


class PretokenizedText:
    """Stands in for the tokenizer when the 'text' already is space-separated token ids (synthetic batches)."""

    def encode(self, texts):
        return [[int(t) for t in text.split()] for text in texts]


def synthetic_dataset(cfg: ModelConfig, n_pairs: int, min_len: int, max_len: int, seed: int) -> PairDataset:
    """Pairs of random token ids: source length uniform in [min_len, max_len], English side 0.7–1.4× as long."""
    rng = np.random.default_rng(seed)
    hi = min(max_len, cfg.max_len)
    src_len = rng.integers(min(min_len, hi), hi + 1, size=n_pairs)
    tgt_len = np.clip(np.round(src_len * rng.uniform(0.7, 1.4, size=n_pairs)), 2, cfg.max_len).astype(int)

    def sentence(n: int) -> str:
        return " ".join(map(str, [*rng.integers(4, cfg.vocab_size, size=n - 1), EOS_ID]))

    langs = [LANGS[i] for i in rng.integers(0, len(LANGS), size=n_pairs)]
    pairs = ParallelPairs(langs, [sentence(n) for n in src_len], [sentence(n) for n in tgt_len], Counter())
    return PairDataset(pairs, PretokenizedText(), sorted(set(LANGS) | {"eng"}), max_length_ratio=3.0)


def real_dataset(tokenizer: Tokenizer, data: str, n_pairs: int, seed: int) -> PairDataset:
    """A random sample of n_pairs real pairs, tokenized as training does."""
    pairs = read_pairs([data])
    keep = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:n_pairs])
    pairs = ParallelPairs([pairs.lang[i] for i in keep], [pairs.text[i] for i in keep], [pairs.eng[i] for i in keep],
                  Counter())
    return PairDataset(pairs, tokenizer, sorted(set(pairs.lang) | {"eng"}), max_length_ratio=3.0)


def step_flops(cfg: ModelConfig, pairs: int, width: int, pieces: int) -> tuple[float, float]:
    """(encoder, heads) model FLOPs of one training step on `pairs` pairs padded to `width` tokens, XTR scoring
    `pieces` vocabulary pieces."""
    rows = 2 * pairs
    encoder = 3 * forward_flops_per_token(cfg, width) * rows * width
    heads_forward = 2 * rows * ((cfg.dim + cfg.lang_dim) * cfg.dim + cfg.dim * pieces
                                + cfg.dim * cfg.dim + cfg.dim * cfg.proj_dim)
    return encoder, 3 * heads_forward


def bench_preset(name: str, args: argparse.Namespace, steps: int) -> dict:
    cfg = PRESETS[name]
    if args.data:
        tok = Tokenizer(args.tokenizer, cfg.max_len)
        cfg = replace(cfg, vocab_size=tok.vocab_size)
        data = real_dataset(tok, args.data, args.pairs, args.seed)
    else:
        data = synthetic_dataset(cfg, args.pairs, args.min_len, args.max_len, args.seed)
    cfg = replace(cfg, n_langs=len(data.languages))
    train_cfg = TrainConfig(batch_tokens=args.batch_tokens, batch_pairs=0, alpha=0.3)
    torch.manual_seed(args.seed)
    trainee = Trainee(EMSEncoder(cfg), EMSHeads(cfg), data.languages.index("eng")).train()
    opts = make_optimizers(trainee, train_cfg)
    stream = data.stream(seed=args.seed, alpha=train_cfg.alpha, batch_tokens=args.batch_tokens)

    records = []
    for i in range(args.warmup + steps):
        _, batch = next(stream)
        src, tgt, lang, dup = (torch.from_numpy(a) for a in (batch.src, batch.tgt, batch.src_lang, batch.duplicates))
        start = time.perf_counter()
        # The body of emsearch.train's loop.
        losses = trainee(src, tgt, lang, dup, None, None, cfg=train_cfg)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        nn.utils.clip_grad_norm_([p for p in trainee.parameters() if p.grad is not None and not p.grad.is_sparse],
                                 train_cfg.grad_clip)
        for opt in opts:
            opt.step()
        seconds = time.perf_counter() - start
        if i < args.warmup:
            continue
        B, T = len(batch.src_lang), max(batch.src.shape[1], batch.tgt.shape[1])
        encoder, heads = step_flops(cfg, B, T, len(batch_vocabulary(src, tgt)))
        real_tokens = int((batch.src != 0).sum() + (batch.tgt != 0).sum())
        mm = matmul_flops(2048, repeats=1)[0]
        records.append({"s": seconds, "pairs": B, "tokens": 2 * B * T, "real_tokens": real_tokens,
                        "flops": encoder + heads, "encoder_flops": encoder, "mm": mm})
    total_s = sum(r["s"] for r in records)
    median = lambda key: statistics.median(r[key] for r in records)  # noqa: E731
    return {
        "preset": name, "steps": len(records), "params_encoder": sum(p.numel() for p in trainee.encoder.parameters()),
        "pairs_per_s": sum(r["pairs"] for r in records) / total_s,
        "tokens_per_s": sum(r["tokens"] for r in records) / total_s,  # padded, both sides
        "real_tokens_per_s": sum(r["real_tokens"] for r in records) / total_s,
        "padding": 1 - sum(r["real_tokens"] for r in records) / sum(r["tokens"] for r in records),
        "step_s_median": median("s"),
        "model_gflops_per_s": sum(r["flops"] for r in records) / total_s / 1e9,
        "heads_share": 1 - sum(r["encoder_flops"] for r in records) / sum(r["flops"] for r in records),
        "matmul_gflops_median": median("mm") / 1e9,
        "mfu": statistics.median(r["flops"] / r["s"] / r["mm"] for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--presets", default="tiny,cpu-fast,cpu-small,gpu-base", help="comma-separated presets")
    parser.add_argument("--steps", type=int, default=0,
                        help="timed steps per preset (default: tiny 20, cpu-fast 10, cpu-small 6, others 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="tokens per side per batch (as training)")
    parser.add_argument("--pairs", type=int, default=20000, help="pairs in the synthetic / sampled dataset")
    parser.add_argument("--min-len", type=int, default=8, help="synthetic sentence length, low end (tokens)")
    parser.add_argument("--max-len", type=int, default=60, help="synthetic sentence length, high end (tokens)")
    parser.add_argument("--data", help="real pairs (parquet/TSV with lang, text, eng) instead of synthetic ids")
    parser.add_argument("--tokenizer", help="SentencePiece model for --data")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (model init, sampled sentences and batches)")
    args = parser.parse_args()
    if args.data and not args.tokenizer:
        parser.error("--data needs --tokenizer (a SentencePiece model, e.g. runs/default/tokenizer.model)")
    unknown = [p for p in args.presets.split(",") if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}: choose from {', '.join(PRESETS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    default_steps = {"tiny": 20, "cpu-fast": 10, "cpu-small": 6}
    results = [bench_preset(p, args, args.steps or default_steps.get(p, 3)) for p in args.presets.split(",")]
    source = args.data or f"synthetic {args.min_len}-{args.max_len} tokens"
    print(json.dumps({"benchmark": "train_throughput", "threads": torch.get_num_threads(),
                      "batch_tokens": args.batch_tokens, "data": source,
                      "results": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                                  for r in results]}))
    print(f"{'preset':<10} {'steps':>5} {'pairs/s':>8} {'tokens/s':>9} {'padding':>8} {'GFLOP/s':>8} "
          f"{'matmul':>8} {'MFU':>6}")
    for r in results:
        print(f"{r['preset']:<10} {r['steps']:>5} {r['pairs_per_s']:>8.1f} {r['tokens_per_s']:>9.0f} "
              f"{r['padding']:>8.1%} {r['model_gflops_per_s']:>8.1f} {r['matmul_gflops_median']:>8.1f} "
              f"{r['mfu']:>6.1%}")


if __name__ == "__main__":
    main()
