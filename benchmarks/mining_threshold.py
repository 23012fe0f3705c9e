"""The mining threshold chosen from the corpus (no gold) against the oracle and the model's fixed threshold.

    nice -n 19 python benchmarks/mining_threshold.py                  # the study corpora, then the mining dev set
    python benchmarks/mining_threshold.py --corpora fra/news:0.3:20000:none,short:1.0:10000:near --skip-dev

Study corpora are built from `../shared/data/parallel` (X–English; news = wmt_*, bible, short = Tatoeba):
`[LANG/]DOMAINS:SHARE:N[xM]:DUP` (LANG deu unless given) is N sentences of LANG and N (or M) English ones, of
which SHARE·N are translation pairs; the rest are LANG sentences whose English is left out and English sentences
of other languages' pairs (never a translation of a LANG one). DUP `exact` adds a copy of a fifth of each side's
sentences, `near` a near-copy (punctuation, case, a doubled word) which keeps its original's gold. A mined pair
is correct when its two texts (near-copies read as their original) are a gold pair; recall counts distinct gold
pairs. Mining as `emsearch mine` does it on an index centred on the corpus mean: ratio margin, k = 4, mode max,
exact kNN (k + 1 neighbours for the negatives).
Reported per corpus: F1 at the oracle (F1-best) threshold, at the threshold chosen from the corpus (with its
estimated and true precision/recall), and at the model's fixed threshold for the pair. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from emsearch.encoder import Encoder
from emsearch.index.exact import exact_knn
from emsearch.index.shards import centred
from emsearch.search.bucc import read_bucc
from emsearch.search.margin import mine
from emsearch.search.threshold import choose_threshold, null_margins

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILES = {"wmt_newstest": "news", "wmt_general": "news", "bible": "bible", "tatoeba_challenge": "short"}
CORPORA = ("news:0.3:20000:none,bible:0.3:12000:none,short:0.3:20000:none,short:0.3:20000:near,"
           "news+bible+short:0.05:40000:none,news+bible+short:0.05:5000:none,news+bible+short:1.0:20000:exact,"
           "news+bible+short:0.5:20000:near,news:0.05:40000:exact,short:1.0:20000:none,"
           "news+bible+short:0.3:40000x300000:none,short:0.1:20000x200000:none,news:0.05:20000x200000:exact,"
           "fra/news:0.3:20000:none,fra/short:0.3:20000:near,fra/news+bible+short:0.05:20000:none,"
           "fra/news+bible+short:1.0:10000:none,fra/short:0.1:20000:exact,"
           "rus/news:0.3:20000:none,rus/short:0.5:20000:near,rus/news+bible+short:0.05:10000:none,"
           "rus/news+bible+short:0.2:40000:near")
K = 4


def load_pairs(data: Path, lang: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(domain, text, eng) of `lang`, and (domain, eng) of every other language's pairs whose English is not one of
    `lang`'s."""
    ours, others = [], []
    for name, domain in FILES.items():
        t = pq.read_table(data / "parallel" / f"{name}.parquet", columns=["lang", "text", "eng"]).to_pydict()
        for code, text, eng in zip(t["lang"], t["text"], t["eng"]):
            (ours.append((domain, text, eng)) if code == lang else others.append((domain, eng)))
    english = {e for _, _, e in ours}
    return ours, [(d, e) for d, e in others if e not in english]


def near_copy(text: str, rng: np.random.Generator) -> str:
    kind = rng.integers(3)
    if kind == 0:
        return text[:-1] + ("!" if text.endswith(".") else ".") if len(text) > 1 else text + "."
    if kind == 1:
        return text[0].swapcase() + text[1:]
    words = text.split()
    i = int(rng.integers(len(words)))
    return " ".join(words[:i + 1] + words[i:])


def build_corpus(spec: str, ours, others, seed: int = 0):
    """(src texts, tgt texts, src originals, tgt originals, gold text pairs) of a `DOMAINS:SHARE:N[xM]:DUP`
    corpus."""
    domains, share, sizes, dup = spec.split(":")
    n, _, n_tgt = sizes.partition("x")
    domains, share, n = set(domains.split("+")), float(share), int(n)
    n_tgt = int(n_tgt or n)
    rng = np.random.default_rng(seed)
    pool = [p for p in ours if p[0] in domains]
    english = sorted({e for d, e in others if d in domains})
    order = rng.permutation(len(pool))
    m = int(share * n)
    parallel = [pool[i] for i in order[:m]]
    used = {t for _, t, _ in parallel}
    distractors = list(dict.fromkeys(pool[i][1] for i in order[m:] if pool[i][1] not in used))[:n - m]
    src = [t for _, t, _ in parallel] + distractors
    tgt = [e for _, _, e in parallel] + [english[i] for i in rng.permutation(len(english))[:n_tgt - m]]
    src_orig, tgt_orig = list(src), list(tgt)
    if dup != "none":
        for side, orig in ((src, src_orig), (tgt, tgt_orig)):
            for i in rng.choice(len(side), len(side) // 5, replace=False):
                side.append(side[i] if dup == "exact" else near_copy(side[i], rng))
                orig.append(orig[i])
    return src, tgt, src_orig, tgt_orig, {(t, e) for _, t, e in pool}


def score_curve(pairs, src, tgt, src_orig, tgt_orig, gold):
    """Scores of the distinct text pairs (as written), and precision, recall and F1 of the top n for every n."""
    seen, found = set(), set()
    scores, correct, new = [], [], []
    for s, t, score in zip(pairs.src.tolist(), pairs.tgt.tolist(), pairs.score.tolist()):
        if (src[s], tgt[t]) in seen:
            continue
        seen.add((src[s], tgt[t]))
        key = (src_orig[s], tgt_orig[t])
        ok = key in gold
        scores.append(score)
        correct.append(ok)
        new.append(ok and key not in found)
        if ok:
            found.add(key)
    src_set, tgt_set = set(src_orig), set(tgt_orig)
    positives = sum(1 for a, b in gold if a in src_set and b in tgt_set)
    n = np.arange(1, len(scores) + 1)
    precision = np.cumsum(correct) / n
    recall = np.cumsum(new) / positives
    with np.errstate(invalid="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return np.asarray(scores, dtype=np.float32), precision, recall, f1


def at(scores: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    n = int((scores >= threshold).sum())
    return float(curve[n - 1]) if n else 0.0


def study(x: np.ndarray, y: np.ndarray, texts, fixed: float) -> dict:
    mean = np.concatenate([x, y]).mean(0)
    x, y = centred(x, mean), centred(y, mean)
    (D_xy, I_xy), (D_yx, I_yx) = exact_knn(x, y, K + 1), exact_knn(y, x, K + 1)
    pairs = mine(D_xy[:, :K], I_xy[:, :K], D_yx[:, :K], I_yx[:, :K])
    choice = choose_threshold(pairs.score, null_margins(D_xy, I_xy, D_yx, I_yx, "ratio"))
    scores, precision, recall, f1 = score_curve(pairs, *texts)
    best = int(np.argmax(f1))
    return {"oracle_f1": round(float(f1[best]), 4), "oracle_threshold": round(float(scores[best]), 4),
            "default_f1": round(at(scores, f1, choice.threshold), 4), "default_threshold": round(choice.threshold, 4),
            "estimated_precision": round(choice.precision, 3), "precision": round(at(scores, precision,
                                                                                       choice.threshold), 3),
            "estimated_recall": round(choice.recall, 3), "recall": round(at(scores, recall, choice.threshold), 3),
            "fixed_f1": round(at(scores, f1, fixed), 4), "wrong_pairs_read_as": choice.fit.wrong}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--model", default=None, help="model bundle; default: the default model")
    ap.add_argument("--corpora", default=CORPORA, help="comma-separated DOMAINS:SHARE:N:DUP corpora")
    ap.add_argument("--dev-pairs", default="de-en,fr-en,ru-en,zh-en", help="mining dev pairs ('' for none)")
    ap.add_argument("--skip-dev", action="store_true", help="only the study corpora")
    args = ap.parse_args()
    if not (args.data / "parallel").is_dir():
        print(f"no data under {args.data}: nothing to measure")
        return
    encoder = Encoder.load(args.model)
    rows, pairs = [], {}
    for spec in filter(None, args.corpora.split(",")):
        lang, _, corpus = spec.rpartition("/")
        lang = lang or "deu"
        if lang not in pairs:
            pairs[lang] = load_pairs(args.data, lang)
        texts = build_corpus(corpus, *pairs[lang])
        row = {"corpus": spec, **study(encoder.encode(texts[0]), encoder.encode(texts[1]), texts,
                                       encoder.mining_threshold(lang, "eng"))}
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    if not args.skip_dev and (args.data / "dev" / "mining").is_dir():
        for pair in filter(None, args.dev_pairs.split(",")):
            d = read_bucc(args.data / "dev" / "mining", pair)
            gold = {(d.src_texts[d.src_ids.index(a)], d.tgt_texts[d.tgt_ids.index(b)]) for a, b in d.gold}
            texts = (d.src_texts, d.tgt_texts, d.src_texts, d.tgt_texts, gold)
            row = {"corpus": f"dev {pair}", **study(encoder.encode(d.src_texts), encoder.encode(d.tgt_texts), texts,
                                                    encoder.mining_threshold(*pair.split("-")))}
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    table = Table(title="mining threshold from the corpus vs the oracle and the model's fixed one (F1)")
    for name in ("corpus", "oracle F1 (thr)", "default F1 (thr)", "est. P / true P", "est. R / true R", "fixed F1"):
        table.add_column(name, justify="left" if name == "corpus" else "right")
    for r in rows:
        table.add_row(r["corpus"], f"{r['oracle_f1']:.3f} ({r['oracle_threshold']:.3f})",
                      f"{r['default_f1']:.3f} ({r['default_threshold']:.3f})",
                      f"{r['estimated_precision']:.3f} / {r['precision']:.3f}",
                      f"{r['estimated_recall']:.3f} / {r['recall']:.3f}", f"{r['fixed_f1']:.3f}")
    Console().print(table)
    print(json.dumps({"benchmark": "mining_threshold", "rows": rows}))


if __name__ == "__main__":
    main()
