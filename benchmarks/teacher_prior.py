"""How strong a teacher prior: one trained token table, shrunk at several priors, each scored as the model card is.

    python benchmarks/teacher_prior.py runs/default --priors 0,30,50,100,200,400

RUN is a training run trained without a prior (its train_config.json has teacher_prior 0, so model/ holds the
trained table). The piece counts come from the run's own pairs and tokenizer (`PairDataset.piece_counts`), the
piece vectors from its teacher_cache (`emsearch cache-teacher --pieces`). Each prior's table goes through the int8
round trip the shipped bundle takes, then: FLORES dev, eng ↔ X both directions, top-1, over every trained FLORES
language and over the 9 with ≥ 20k pairs; mining dev F1 (ratio margin, k = 4, centred) at each pair's best
threshold and at the threshold shared by the four; and how often the gold English is the nearest English of a
gold zh sentence. One JSON line per prior; exits 0 with a message when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from emsearch.train.recipe import run_config
from emsearch.train.data import PairDataset, read_pairs
from emsearch.encoder import Encoder
from emsearch.evaluate import retrieval_accuracy
from emsearch.search.bucc import bucc, read_bucc, shared_threshold
from emsearch.index.shards import centred
from emsearch.languages import normalize_lang
from emsearch.train.token_table import load_piece_vectors, piece_prior

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PAIRS = ("de-en", "fr-en", "ru-en", "zh-en")


def gold_nearest(encoder: Encoder, data: Path, pair: str) -> float:
    """Share of the gold source sentences whose nearest target sentence (centred cosine) is their gold one."""
    d = read_bucc(data / "dev/mining", pair)
    x, y = encoder.encode(d.src_texts), encoder.encode(d.tgt_texts)
    mean = np.concatenate([x, y]).mean(0)
    x, y = centred(x, mean), centred(y, mean)
    src, tgt = {s: i for i, s in enumerate(d.src_ids)}, {t: i for i, t in enumerate(d.tgt_ids)}
    rows, cols = np.array([src[s] for s, _ in d.gold]), np.array([tgt[t] for _, t in d.gold])
    return float(((x[rows] @ y.T).argmax(1) == cols).mean())


def score(encoder: Encoder, data: Path) -> dict:
    trained = encoder.info["languages"]
    flores = retrieval_accuracy(encoder, data / "dev/retrieval/flores_dev.parquet",
                                langs=[lang for lang in trained if lang != "eng"])
    rich = [s.mean for s in flores.scores if trained.get(normalize_lang(s.lang), 0) >= 20_000]
    mining = [bucc(encoder, data / "dev/mining", pair) for pair in PAIRS]
    threshold = shared_threshold(mining)
    return {"flores_150": round(100 * flores.average, 1), "flores_9": round(100 * float(np.mean(rich)), 1),
            "f1_shared": {p: round(100 * r.f1_at(threshold), 1) for p, r in zip(PAIRS, mining)},
            "f1_best": {p: round(100 * r.f1, 1) for p, r in zip(PAIRS, mining)},
            "zh_gold_nearest": round(100 * gold_nearest(encoder, data, "zh-en"), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="training run directory, trained with teacher_prior 0")
    ap.add_argument("--priors", default="0,30,50,100,200,400", help="comma-separated priors; 0 = the table as trained")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder (dev sets)")
    args = ap.parse_args()
    if not (args.data / "dev/mining").is_dir():
        print(f"no dev data under {args.data}: nothing to measure")
        return
    cfg = run_config(args.run)
    if cfg.teacher_prior:
        raise SystemExit(f"{args.run} exports a shrunk table (teacher_prior {cfg.teacher_prior}): give a run "
                         "trained with teacher_prior 0")
    encoder = Encoder.load(args.run / "model", device="cpu")
    pairs = read_pairs(cfg.data)
    data = PairDataset(pairs, encoder.tokenizer, sorted(set(pairs.lang) | {"eng"}), cfg.max_length_ratio)
    counts = data.piece_counts(encoder.tokenizer.vocab_size)
    vectors = load_piece_vectors(cfg.teacher_cache, encoder.tokenizer.path)
    trained = encoder.model.tok_emb.weight.detach().numpy().copy()
    with tempfile.TemporaryDirectory() as tmp:
        for prior in (int(p) for p in args.priors.split(",")):
            with torch.no_grad():
                encoder.model.tok_emb.weight.copy_(torch.from_numpy(
                    piece_prior(trained, vectors, counts, prior) if prior else trained))
            stored = Encoder.load(encoder.save(Path(tmp) / "model", weights="int8"), device="cpu")
            print(json.dumps({"prior": prior, **score(stored, args.data)}), flush=True)


if __name__ == "__main__":
    main()
