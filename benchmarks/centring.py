"""Which centring of the sentence vectors helps mining and retrieval: the measurement behind index centring.

    python benchmarks/centring.py                       # the default model; --model runs/default/model
    python benchmarks/centring.py --lir 1,2,4,8,16,32   # also remove language directions

Variants, all on the same vectors (unit rows of the model), each scored by the project's own functions:
    none       plain cosines
    joint      both sides minus the mean of both (what an index holding both sides does: `emsearch build-index`)
    own        each side minus its own mean (two indexes, one per language)
    train      both sides minus one fixed vector for every corpus, the mean of the training languages' means (no
               corpus statistics needed); with --lir, also minus the top r directions those language means spread
               along (language information removal, Yang et al. 2021)
Mining: BUCC-style dev pairs (`dev/mining`), ratio margin, k = 4, mode max: best F1 per pair, and F1 at the threshold
that maximises the sum over pairs. Retrieval: FLORES dev, eng ↔ X both directions, top-1, every FLORES language
whose code is a training language ("9": the nine with ≥ 20k pairs); `own` and `joint` centre per language pair.
Prints one JSON line per variant; exits 0 with a message when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from emsearch.encoder import Encoder
from emsearch.evaluate import load_multiway, top1_accuracy
from emsearch.search.bucc import bucc_vectors, read_bucc, shared_threshold
from emsearch.index.shards import centred
from emsearch.languages import UnknownLanguageError, normalize_lang

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PAIRS = ("de-en", "fr-en", "ru-en", "zh-en")
BIG9 = ("deu", "ces", "spa", "rus", "fra", "tur", "epo", "hun", "fin")


def language_directions(encoder: Encoder, data: Path, per_lang: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the training languages' mean vectors, and the directions those means spread along (rows,
    largest first), from up to `per_lang` sentences of each language (English: 5×) of the training pairs."""
    rng = np.random.default_rng(seed)
    by_lang: dict[str, list[str]] = {}
    eng: set[str] = set()
    for path in sorted((data / "parallel").glob("*.parquet")):
        table = pq.read_table(path, columns=["lang", "text", "eng"]).to_pydict()
        for lang, text, english in zip(table["lang"], table["text"], table["eng"]):
            by_lang.setdefault(lang, []).append(text)
            eng.add(english)
    by_lang["eng"] = sorted(eng)
    means = []
    for lang, texts in sorted(by_lang.items()):
        n = min(len(texts), per_lang * (5 if lang == "eng" else 1))
        means.append(encoder.encode([texts[i] for i in rng.choice(len(texts), n, replace=False)]).mean(0))
    means = np.stack(means)
    mean = means.mean(0)
    return mean, np.linalg.svd(means - mean, full_matrices=False)[2]


def transform(variant: str, a: np.ndarray, b: np.ndarray, fixed) -> tuple[np.ndarray, np.ndarray]:
    """The two sides as the variant compares them; `fixed` is (mean, directions to remove) for `train`."""
    if variant == "none":
        return a, b
    if variant == "joint":
        mean = np.concatenate([a, b]).mean(0)
        return centred(a, mean), centred(b, mean)
    if variant == "own":
        return centred(a, a.mean(0)), centred(b, b.mean(0))
    mean, directions = fixed

    def remove(x: np.ndarray) -> np.ndarray:
        x = x - mean
        x = x - (x @ directions.T) @ directions
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)

    return remove(a), remove(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model bundle; default: the default model")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--lir", default="", help="comma-separated numbers of language directions to remove, e.g. 1,4,16")
    ap.add_argument("--per-lang", type=int, default=200, help="training sentences per language for the train mean")
    args = ap.parse_args()
    if not (args.data / "dev/mining").is_dir():
        print(f"no dev data under {args.data}: nothing to measure")
        return
    encoder = Encoder.load(args.model)
    fixed_mean, directions = language_directions(encoder, args.data, args.per_lang)
    variants = {"none": None, "joint": None, "own": None, "train": (fixed_mean, directions[:0]),
                **{f"train-lir{r}": (fixed_mean, directions[:r]) for r in map(int, filter(None, args.lir.split(",")))}}

    bucc = {p: read_bucc(args.data / "dev/mining", p) for p in PAIRS}
    mining_vectors = {p: (encoder.encode(d.src_texts), encoder.encode(d.tgt_texts)) for p, d in bucc.items()}
    flores = load_multiway(args.data / "dev/retrieval/flores_dev.parquet")
    ids = sorted(flores["eng_Latn"])
    english = encoder.encode([flores["eng_Latn"][i] for i in ids])
    trained = set(encoder.info.get("languages", {})) - {"eng"}
    labels = []
    for label in sorted(flores):
        try:
            if normalize_lang(label) in trained:
                labels.append(label)
        except UnknownLanguageError:
            continue
    flores_vectors = {label: encoder.encode([flores[label][i] for i in ids]) for label in labels}

    for name, fixed in variants.items():
        reports = []
        for pair, (x, y) in mining_vectors.items():
            reports.append(bucc_vectors(bucc[pair], *transform(name if fixed is None else "train", x, y, fixed)))
        threshold = shared_threshold(reports)
        accuracy = {}
        for label, xq in flores_vectors.items():
            a, b = transform(name if fixed is None else "train", xq, english, fixed)
            accuracy[label] = (top1_accuracy(a, b) + top1_accuracy(b, a)) / 2
        print(json.dumps({
            "variant": name, "flores_trained": round(100 * float(np.mean(list(accuracy.values()))), 2),
            "flores_big9": round(100 * float(np.mean([v for k, v in accuracy.items() if k[:3] in BIG9])), 2),
            "mining_best_f1": {r.pair: round(100 * r.f1, 1) for r in reports},
            "threshold": round(threshold, 4), "mining_f1_at_threshold": {r.pair: round(100 * r.f1_at(threshold), 1)
                                                                         for r in reports}}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
