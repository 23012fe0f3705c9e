"""Evaluate a trained bundle on the dev sets, set its default mining threshold, and write its model card.

    python training/evaluate_and_card.py runs/default/model --data ../shared/data --install emsearch/models/default

Dev figures: FLORES-200 dev retrieval (eng ↔ X, top-1, both directions) for every FLORES language whose code
normalises to a training language; BUCC-style mining F1 on dev/mining (ratio margin, mode max, each pair's two
sides centred on their common mean, as an index of them compares them). The F1-best
threshold over all four pairs' candidates becomes the bundle's shared default mining threshold, and each pair's
own F1-best threshold that pair's default (`emsearch mine` takes the pair's where the bundle has one). The card lists the
training languages with their pair counts, the sources with their licences and attribution lines (Bible
translations one by one), the compute used and the figures; it is rendered from the run's own files.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from emsearch.encoder import WEIGHT_FORMATS, Encoder, language_pair
from emsearch.evaluate import retrieval_accuracy
from emsearch.search.bucc import bucc, shared_threshold
from emsearch.languages import UnknownLanguageError, normalize_lang

SOURCES = """\
| data | licence | attribution |
|---|---|---|
| Tatoeba Translation Challenge test sets | CC BY 2.0 FR | Sentences from Tatoeba (tatoeba.org), CC BY 2.0 FR. Test splits by J. Tiedemann, “The Tatoeba Translation Challenge – Realistic Data Sets for Low Resource and Multilingual MT”, WMT 2020. |
| OLDI Seed v2.0 | CC BY-SA 4.0 | Open Language Data Initiative Seed dataset, based on NLLB-Seed (NLLB Team et al., 2022; Maillard et al., ACL 2023). |
| TICO-19 | CC0 1.0 | Translation Initiative for COVID-19 (Anastasopoulos et al., 2020). |
| WMT newstest 2008–2018 | research use (no formal licence; news texts © their publishers) | Test sets of the Workshop/Conference on Machine Translation (statmt.org), as collected in Helsinki-NLP/OPUS-MT-testsets. |
| WMT general/news test and dev sets 2017–2024 | research use (no formal licence; texts © their publishers) | Test and development sets of the Conference on Machine Translation (WMT 2017, 2019–2024), via Helsinki-NLP/OPUS-MT-testsets and wmt-conference/wmt23-news-systems, wmt24-news-systems (Findings of WMT: Bojar et al. 2017; Barrault et al. 2019, 2020; Akhbardeh et al. 2021; Kocmi et al. 2022, 2023, 2024). |
| Korean–English news corpus | CC BY-SA 3.0 | J. Park, J.-P. Hong, J.-W. Cha, “Korean Language Resources for Everyone”, PACLIC 30, 2016 (github.com/jungyeul/korean-parallel-corpora). |
| UD treebanks with English translations | per row: CC BY-SA 4.0 or CC0 1.0 | Universal Dependencies (universaldependencies.org); each treebank with its contributors and reference listed below. |
| Bible translations | per row: public domain, CC BY 4.0, CC BY 3.0 BR or CC BY-SA 4.0 | eBible.org translations via the ebible_data corpus (D. Baines); SWORD modules (CrossWire) via scrollmapper/bible_databases. Copyright holder of every CC-licensed translation: listed below. English side: World English Bible, public domain. |
| FLORES-200 dev (via SIB-200), evaluation only | CC BY-SA 4.0 | NLLB Team et al., “No Language Left Behind”, 2022; SIB-200 (Adelani et al., 2023); N'Ko data from Doumbouya et al., 2023. |
| Mining dev task (WMT newstest 2014–2018), evaluation only | research use | as WMT above. |
"""

PAIRS = ("de-en", "fr-en", "ru-en", "zh-en")


def flores_scores(encoder: Encoder, data: Path, trained: dict[str, int]):
    path = data / "dev/retrieval/flores_dev.parquet"
    return retrieval_accuracy(encoder, path, langs=[lang for lang in trained if lang != "eng"])


def bible_lines(data: Path) -> list[str]:
    with open(data / "bible_sources.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [f"- `{r['lang']}`: {r['title']} ({r['license']}; {r['copyright'] or 'no copyright line'}; {r['url']})"
            for r in rows]


def ud_lines(data: Path) -> list[str]:
    """The UD treebanks of `ud_text_en.parquet`, each with its licence and its contributors and reference, from the
    table in the data README's section on that file."""
    readme = (data / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### `ud_text_en.parquet`"):]
    section = section[: section.index("\n#", 1)]
    lines = []
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0].startswith("`UD_"):
            lines.append(f"- {cells[0]} (`{cells[1]}`, {cells[2]}): {cells[6]}")
    return lines


def render_card(info: dict, train_cfg: dict, log: list[dict], flores, buccs, threshold: float,
                trained: dict[str, int], data: Path, weights: str) -> str:
    """The model card; `threshold` is the shared one, each pair's own is its F1-best."""
    by_label = {s.lang: s for s in flores.scores}
    rich = [s for s in flores.scores if trained.get(normalize_lang(s.lang), 0) >= 20_000]
    steps = [r for r in log if "loss" in r]
    evals = [r for r in log if "eval_accuracy" in r]
    last = steps[-1] if steps else {}
    model = info["model"]
    lines = [
        "# emsearch default EMS model",
        "",
        "A multilingual sentence encoder trained with the EMS objectives (Mao, Chu, Kurohashi, TASLP 2024): "
        "cross-lingual token reconstruction (XTR) plus in-batch contrastive learning, on X↔English pairs. "
        "One SentencePiece vocabulary, no language id at inference.",
        "",
        "## Model",
        f"- {shape(model)}; vocabulary {model['vocab_size']} ({vocabulary(train_cfg)}), up to {model['max_len']} "
        "tokens; "
        + ("weights fp16 (safetensors)." if weights == "fp16" else
           f"weights {weights} (safetensors)." if weights == "fp32" else
           f"token table {weights} (one fp16 scale per row), other weights fp16 (safetensors); the figures below "
           "are those of these weights."),
        f"- Model id (SHA-256 of the weights, first 16 hex): `{info['model_id']}`.",
        f"- Default mining threshold (ratio margin, mode max, k=4, vectors centred on the corpus mean as "
        f"`emsearch build-index` does): **{threshold:.4f}**, the one that maximises the summed F1 of the four "
        "mining dev pairs; for each of those pairs, its own F1-best threshold on the dev set (below).",
        "",
        "## Training",
        f"- Recipe: `training/default.json` ({train_cfg['steps']} steps planned, {batches(train_cfg)}, "
        f"lr {train_cfg['lr']}, language sampling alpha {train_cfg['alpha']}, seed {train_cfg['seed']}).",
        f"- Objectives: {objectives(train_cfg)}. {teacher_line(train_cfg, info)}",
        f"- Compute: {info.get('train_steps', last.get('step'))} steps, "
        f"{last.get('elapsed', 0) / 60:.0f} minutes on {info.get('trained_on', 'an unrecorded machine')}.",
        f"- {len(trained) - ('eng' in trained)} languages paired with English, "
        f"{sum(v for k, v in trained.items() if k != 'eng'):,} pairs; pairs per language below.",
        "",
        "## Dev figures",
        f"FLORES-200 dev retrieval (510 sentences, top-1, eng↔X both directions), averaged over the "
        f"{len(flores.scores)} FLORES languages whose code is a training language: **{flores.average:.1%}**; "
        f"over the {len(rich)} with ≥ 20k training pairs: **{np.mean([s.mean for s in rich]):.1%}**.",
        "",
        "Mining dev set (BUCC-style, ratio margin, mode max, k=4, both sides centred on their common mean), at the "
        "pair's default threshold (its F1-best on this set, so the F1 is in-sample) and at the shared one:",
        "",
        "| pair | default threshold | precision | recall | F1 | F1 at the shared threshold |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for pair, r in zip(PAIRS, buccs):
        lines.append(f"| {pair} | {r.best_threshold:.4f} | {r.best.precision:.1%} | {r.best.recall:.1%} | "
                     f"{100 * r.f1:.1f} | {100 * r.f1_at(threshold):.1f} |")
    lines += ["", "Dev retrieval accuracy during training:", "", "| step | minutes | FLORES dev accuracy |",
              "|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['elapsed'] / 60:.0f} | {r['eval_accuracy']:.1%} |" for r in evals]
    lines += ["", "## Languages", "", "| language | training pairs | FLORES label | X→eng | eng→X |",
              "|---|---:|---|---:|---:|"]
    for lang, n in sorted(trained.items(), key=lambda kv: -kv[1]):
        if lang == "eng":
            continue
        labels = [s for s in by_label.values() if _norm(s.lang) == lang]
        if labels:
            lines += [f"| {lang} | {n:,} | {s.lang} | {s.to_pivot:.1%} | {s.from_pivot:.1%} |" for s in labels]
        else:
            lines.append(f"| {lang} | {n:,} | – | – | – |")
    lines += [
        "", "## Limitations",
        "Trained in about an hour on two CPU cores from 1.5M pairs, this model is far below encoders trained on "
        "hundreds of millions of pairs, and languages with few pairs are much weaker than those above. "
        + ("A bag of sub-words has no word order: it cannot tell 'the dog bites the man' from 'the man bites "
           "the dog', and it leans on shared pieces such as names and numbers. " if not model["layers"] else "")
        + "Bible text dominates the pairs of many languages, so expect a religious-register bias there.",
        "", "## Licence and attribution",
        "The weights are released under CC BY-SA 4.0, because part of the training rows are CC BY-SA 4.0 "
        "(OLDI Seed, many Bible translations, most UD treebanks; the Korean news corpus is CC BY-SA 3.0, whose "
        "adaptations may take a later version). WMT rows are for research use. Training data:", "",
        SOURCES, "Bible translations used (language, title, licence, copyright line, origin):", "",
        *bible_lines(data), "",
        "Universal Dependencies treebanks used (language, licence, contributors and reference):", "",
        *ud_lines(data), "",
    ]
    return "\n".join(lines)


def shape(model: dict) -> str:
    pooling = "a mean weighted by a learned weight per piece" if model.get("pooling") == "weighted" else "a mean"
    if not model["layers"]:
        return f"a bag of sub-word embeddings of width {model['dim']}, pooled by {pooling} (no transformer block)"
    return (f"{model['layers']} transformer layers, width {model['dim']}, {model['heads']} heads, FFN "
            f"{model['ffn']}, pooled by {pooling}")


def vocabulary(cfg: dict) -> str:
    if cfg.get("tokenizer_path"):
        return f"the SentencePiece model {cfg['tokenizer_path']}"
    tok = cfg["tokenizer"]
    joined = (f", joined with up to {tok['teacher_pieces']:,} of the teacher's pieces (XLM-R's vocabulary) in the "
              f"scripts where it learnt fewer than {tok['teacher_pieces_below']} pieces of 2+ characters"
              if tok.get("teacher_pieces") else "")
    return (f"SentencePiece {tok['model_type']}{', lowercased' if tok['lowercase'] else ''}, trained on "
            f"{tok['sample_sentences']:,} sentences of the pairs drawn at language alpha {tok['alpha']}, character "
            f"coverage {tok['character_coverage']}{joined}")


def batches(cfg: dict) -> str:
    if cfg.get("batch_pairs"):
        return f"batches of {cfg['batch_pairs']} pairs"
    return f"{cfg['batch_tokens']} tokens per side per batch"


def objectives(cfg: dict) -> str:
    parts = []
    if cfg["contrastive_weight"]:
        margin = f", additive margin {cfg['margin']}" if cfg.get("margin") else ""
        parts.append(f"contrastive (weight {cfg['contrastive_weight']}, temperature {cfg['temperature']}{margin})")
    if cfg["xtr_weight"]:
        scope = f" on {cfg['xtr_pairs']} pairs of each batch" if cfg.get("xtr_pairs") else ""
        parts.append(f"XTR (weight {cfg['xtr_weight']}, softmax over the batch vocabulary{scope})")
    return " + ".join(parts)


def teacher_line(cfg: dict, info: dict) -> str:
    """Whether and how a teacher was used (the card must say)."""
    if not (cfg.get("distill_weight") or cfg.get("teacher_init") or cfg.get("teacher_prior")):
        return "No teacher model was used: every signal comes from the pairs."
    meta = json.loads((Path(cfg["teacher_cache"]) / "teacher.json").read_text(encoding="utf-8"))
    uses = []
    if cfg.get("teacher_init"):
        uses.append("the token table started from its vector of each vocabulary piece (the piece's text alone), "
                    f"reduced to width {cfg['model']['dim']} by PCA, at standard deviation {cfg['teacher_init']} "
                    "(`emsearch cache-teacher --pieces`); training then moved every row freely")
    if cfg.get("teacher_prior"):
        uses.append("the exported table shrinks each row towards a linear map of the piece's teacher vector, "
                    f"fitted on the pieces seen at least {cfg['teacher_prior']} times: a piece seen n times in the "
                    f"pairs keeps n / (n + {cfg['teacher_prior']}) of its trained row")
    if cfg.get("distill_weight"):
        uses.append("both sides of a pair are pulled towards its vector of the English side through a linear "
                    f"head (cosine distance, weight {cfg['distill_weight']}), for the {info['teacher_pairs']:.0%} "
                    "of pairs whose English sentence is in the teacher cache (`emsearch cache-teacher`)")
    return (f"Teacher: {meta['name']}, MIT licence, prompt prefix `{meta['prefix']}`: " + "; ".join(uses)
            + ". No teacher is needed at inference.")


def _norm(label: str) -> str | None:
    try:
        return normalize_lang(label)
    except UnknownLanguageError:
        return None


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
    train_cfg = json.loads((run / "train_config.json").read_text())
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
