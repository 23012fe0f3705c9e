"""Evaluate a trained bundle on the dev sets, set its default mining threshold, and write its model card.

    python training/evaluate_and_card.py runs/default/model --data ../shared/data --install emsearch/models/default

Dev figures: FLORES-200 dev retrieval (eng ↔ X, top-1, both directions) for every FLORES language whose code
normalises to a training language; BUCC-style mining F1 on dev/mining (ratio margin, mode max, each pair's two
sides centred on their common mean, as an index of them compares them). The F1-best
threshold over all four pairs' candidates becomes the bundle's shared default mining threshold, and each pair's
own F1-best threshold that pair's default (`emsearch mine` takes the pair's where the bundle has one). The card lists the
training languages with their pair counts, the sources with their licences and attribution lines (Bible
translations one by one), the compute used and the figures; it is rendered from the run's own files by
`emsearch.train.card` (its template: emsearch/train/card.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from emsearch.encoder import WEIGHT_FORMATS, Encoder, language_pair
from emsearch.evaluate import retrieval_accuracy
from emsearch.search.bucc import bucc, shared_threshold
from emsearch.train.card import PAIRS, render_card
from emsearch.train.recipe import run_config


def flores_scores(encoder: Encoder, data: Path, trained: dict[str, int]):
    path = data / "dev/retrieval/flores_dev.parquet"
    return retrieval_accuracy(encoder, path, langs=[lang for lang in trained if lang != "eng"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="model bundle directory (e.g. runs/default/model)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data folder")
    ap.add_argument("--install", type=Path, help="also copy the finished bundle here (e.g. emsearch/models/default)")
    ap.add_argument("--weights", choices=WEIGHT_FORMATS, default="fp16",
                    help="how the bundle stores its weights (int8, int6: the token table as 8- or 6-bit rows, for a "
                         "vocabulary whose fp16 table would not fit the package); the dev figures are those of "
                         "these weights")
    args = ap.parse_args()

    run = args.bundle.parent
    encoder = Encoder.load(Encoder.load(args.bundle).save(args.bundle, weights=args.weights))
    trained = encoder.info["languages"]
    flores = flores_scores(encoder, args.data, trained)
    buccs = [bucc(encoder, args.data / "dev/mining", pair) for pair in PAIRS]
    threshold = shared_threshold(buccs)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_cfg = asdict(run_config(run))
    card = render_card(encoder.info, train_cfg, log, flores, buccs, threshold, trained, args.data, args.weights)
    dev = {"flores_average": flores.average,
           "flores_per_lang": {s.lang: [s.to_pivot, s.from_pivot] for s in flores.scores},
           "mining_f1": {pair: r.f1 for pair, r in zip(PAIRS, buccs)},
           "mining_f1_shared_threshold": {pair: r.f1_at(threshold) for pair, r in zip(PAIRS, buccs)}}
    per_pair = {language_pair(*pair.split("-")): r.best_threshold for pair, r in zip(PAIRS, buccs)}
    encoder.save(args.bundle, weights=args.weights, card=card, mining_threshold=threshold,
                 mining_thresholds=per_pair, dev=dev)
    print(json.dumps({"flores_average": flores.average, "threshold": threshold, "thresholds": per_pair,
                      **{p: round(100 * f1, 1) for p, f1 in dev["mining_f1"].items()},
                      "at_shared": {p: round(100 * f1, 1) for p, f1 in dev["mining_f1_shared_threshold"].items()}}))
    if args.install:
        shutil.rmtree(args.install, ignore_errors=True)
        shutil.copytree(args.bundle, args.install)


if __name__ == "__main__":
    main()
