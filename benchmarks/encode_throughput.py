"""Encoding throughput (sentences/s) of `Encoder.encode` per model preset, and its model-FLOP utilisation.

    python benchmarks/encode_throughput.py                                  # cpu-fast and cpu-small on FLORES dev sentences
    python benchmarks/encode_throughput.py --presets tiny,cpu-small,gpu-base --sentences 2000 --repeats 5
    python benchmarks/encode_throughput.py --tokenizer runs/default/tokenizer.model --batch-tokens 8192

The model has random weights (speed does not depend on them) and the preset's shape, with the vocabulary of a
real SentencePiece model: --tokenizer, else the shipped default model's, else one trained here on the text.
The text is a realistic length mix: --text (parquet, --column), by default the FLORES-200 dev sentences of
../shared/data when present, else synthetic sentences of 4–40 words.

Model FLOPs of one call: Σ over its batches of forward_flops_per_token(cfg, T) × B·T, batches as `encode` makes
them (`length_batches`, B rows padded to width T). MFU = model FLOP/s ÷ fp32 matmul FLOP/s, measured after
every repeat (a 2048² product) so that a shared machine loads both equally; the median ratio is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_flops import matmul_flops  # noqa: E402

from emsearch.config import PRESETS, TokenizerConfig  # noqa: E402
from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder, length_batches  # noqa: E402
from emsearch.model import EMSEncoder, forward_flops_per_token  # noqa: E402
from emsearch.tokenizer import Tokenizer, train_tokenizer  # noqa: E402

FLORES_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dev" / "retrieval" / "flores_dev.parquet"


def load_sentences(path: Path | None, column: str, n: int, seed: int) -> tuple[list[str], str]:
    rng = np.random.default_rng(seed)
    if path is not None and path.is_file():
        texts = pq.read_table(path, columns=[column]).column(column).to_pylist()
        return [texts[i] for i in rng.permutation(len(texts))[:n]], str(path.resolve())
    words = [f"w{i}" for i in range(5000)]
    return [" ".join(rng.choice(words, size=rng.integers(4, 41))) for _ in range(n)], "synthetic 4-40 words"


def resolve_tokenizer(path: str | None, texts: list[str], workdir: Path) -> Path:
    if path:
        return Path(path)
    if (DEFAULT_MODEL_DIR / "tokenizer.model").is_file():
        return DEFAULT_MODEL_DIR / "tokenizer.model"
    cfg = TokenizerConfig(vocab_size=8000, sample_sentences=len(texts), model_type="bpe")
    return train_tokenizer({"all": texts}, cfg, workdir / "tokenizer.model")


def encode_flops(encoder: Encoder, texts: list[str], batch_tokens: int) -> tuple[float, int, int]:
    """(model FLOPs, padded tokens, real tokens) of encoder.encode(texts, batch_tokens)."""
    lengths = [len(ids) for ids in encoder.tokenizer.encode(texts)]
    flops, padded = 0.0, 0
    for rows in length_batches(lengths, batch_tokens):
        T = max(lengths[i] for i in rows)
        flops += forward_flops_per_token(encoder.config, T) * len(rows) * T
        padded += len(rows) * T
    return flops, padded, sum(lengths)


def bench_preset(name: str, tokenizer_path: Path, texts: list[str], args: argparse.Namespace) -> dict:
    tok = Tokenizer(tokenizer_path, PRESETS[name].max_len)
    cfg = replace(PRESETS[name], vocab_size=tok.vocab_size)
    torch.manual_seed(args.seed)
    encoder = Encoder(EMSEncoder(cfg), tok, {"model_id": "benchmark"}, device="cpu")
    flops, padded, real = encode_flops(encoder, texts, args.batch_tokens)
    encoder.encode(texts[: max(1, len(texts) // 10)], batch_tokens=args.batch_tokens)  # warm-up
    start = time.perf_counter()
    tok.encode(texts)
    tokenize_s = time.perf_counter() - start
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        encoder.encode(texts, batch_tokens=args.batch_tokens)
        seconds = time.perf_counter() - start
        runs.append((seconds, matmul_flops(2048, repeats=1)[0]))
    seconds = statistics.median(s for s, _ in runs)
    return {
        "preset": name, "sentences": len(texts), "repeats": args.repeats,
        "sentences_per_s": len(texts) / seconds, "tokens_per_s": real / seconds,
        "padding": 1 - real / padded, "tokens_per_sentence": real / len(texts),
        "seconds_median": seconds, "tokenize_share": tokenize_s / seconds,
        "model_gflops_per_s": flops / seconds / 1e9,
        "matmul_gflops_median": statistics.median(mm for _, mm in runs) / 1e9,
        "mfu": statistics.median(flops / s / mm for s, mm in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--presets", default="cpu-fast,cpu-small", help="comma-separated presets")
    parser.add_argument("--sentences", type=int, default=2000, help="sentences per encode call")
    parser.add_argument("--repeats", type=int, default=5, help="timed encode calls per preset")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="Encoder.encode batch_tokens")
    parser.add_argument("--text", type=Path, help="parquet of sentences (default: FLORES dev if present)")
    parser.add_argument("--column", default="text", help="text column of --text")
    parser.add_argument("--tokenizer", help="SentencePiece model (default: the shipped model's, or train one)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (model init, sampled sentences and batches)")
    args = parser.parse_args()
    unknown = [p for p in args.presets.split(",") if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}: choose from {', '.join(PRESETS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.text is not None and not args.text.is_file():
        parser.error(f"--text {args.text}: no such file")
    texts, source = load_sentences(args.text or FLORES_DEV, args.column, args.sentences, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = resolve_tokenizer(args.tokenizer, texts, Path(tmp))
        results = [bench_preset(p, tokenizer, texts, args) for p in args.presets.split(",")]
    print(json.dumps({"benchmark": "encode_throughput", "threads": torch.get_num_threads(), "text": source,
                      "tokenizer": str(args.tokenizer or "default/trained"), "batch_tokens": args.batch_tokens,
                      "results": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                                  for r in results]}))
    print(f"{'preset':<10} {'sent/s':>8} {'tokens/s':>9} {'tok/sent':>8} {'padding':>8} {'GFLOP/s':>8} "
          f"{'matmul':>8} {'MFU':>6}")
    for r in results:
        print(f"{r['preset']:<10} {r['sentences_per_s']:>8.1f} {r['tokens_per_s']:>9.0f} "
              f"{r['tokens_per_sentence']:>8.1f} {r['padding']:>8.1%} {r['model_gflops_per_s']:>8.1f} "
              f"{r['matmul_gflops_median']:>8.1f} {r['mfu']:>6.1%}")


if __name__ == "__main__":
    main()
