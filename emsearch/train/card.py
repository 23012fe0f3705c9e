"""The model card of a trained bundle, rendered from card.md (a `string.Template` beside this module) with the
run's own figures: its recipe (OUT/train_config.json), log, languages, dev retrieval and mining results, and the
data folder's attribution lines (Bible translations one by one, UD treebanks with their contributors).
`training/evaluate_and_card.py` computes the figures and calls `render_card`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from string import Template

import numpy as np

from emsearch.languages import UnknownLanguageError, normalize_lang

TEMPLATE = Path(__file__).with_name("card.md")
PAIRS = ("de-en", "fr-en", "ru-en", "zh-en")  # the mining dev pairs, in the card's order


def render_card(info: dict, train_cfg: dict, log: list[dict], flores, buccs, threshold: float,
                trained: dict[str, int], data: Path, weights: str) -> str:
    """The model card; `flores` a retrieval report, `buccs` the BUCC reports of PAIRS, `threshold` the shared
    one (each pair's own is its F1-best), `trained` the pairs per training language, `weights` the bundle's
    weight format."""
    rich = [s for s in flores.scores if trained.get(normalize_lang(s.lang), 0) >= 20_000]
    steps = [r for r in log if "loss" in r]
    last = steps[-1] if steps else {}
    model = info["model"]
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        shape=shape(model), vocab_size=model["vocab_size"], vocabulary=vocabulary(train_cfg),
        max_len=model["max_len"], weights=weights_line(weights), model_id=info["model_id"],
        threshold=f"{threshold:.4f}", steps=train_cfg["steps"], batches=batches(train_cfg), lr=train_cfg["lr"],
        alpha=train_cfg["alpha"], seed=train_cfg["seed"], objectives=objectives(train_cfg),
        teacher=teacher_line(train_cfg, info), train_steps=info.get("train_steps", last.get("step")),
        minutes=f"{last.get('elapsed', 0) / 60:.0f}", machine=info.get("trained_on", "an unrecorded machine"),
        languages=len(trained) - ("eng" in trained), pairs=f"{sum(v for k, v in trained.items() if k != 'eng'):,}",
        flores_languages=len(flores.scores), flores_average=f"{flores.average:.1%}", rich_languages=len(rich),
        rich_average=f"{np.mean([s.mean for s in rich]):.1%}",
        mining_rows=_rows(f"| {pair} | {r.best_threshold:.4f} | {r.best.precision:.1%} | {r.best.recall:.1%} | "
                          f"{100 * r.f1:.1f} | {100 * r.f1_at(threshold):.1f} |" for pair, r in zip(PAIRS, buccs)),
        eval_rows=_rows(f"| {r['step']} | {r['elapsed'] / 60:.0f} | {r['eval_accuracy']:.1%} |"
                        for r in log if "eval_accuracy" in r),
        language_rows=_rows(language_rows(flores, trained)),
        bag_limits="" if model["layers"] else (
            "A bag of sub-words has no word order: it cannot tell 'the dog bites the man' from 'the man bites the "
            "dog', and it leans on shared pieces such as names and numbers. "),
        bible_lines=_rows(bible_lines(data)), ud_lines=_rows(ud_lines(data, "ud_text_en.parquet")),
        mono_ud_lines="" if not train_cfg.get("mono") else (
            "\n\nUniversal Dependencies treebanks of the monolingual sentences of the mono stage (per row CC BY-SA 4.0 "
            "or CC BY-SA 3.0; language, licence, contributors and reference):\n" + _rows(ud_lines(data, "mono/ud_text.parquet"))))


def _rows(lines) -> str:
    """Lines that follow a template line, each on its own line (nothing at all for none)."""
    return "".join(f"\n{line}" for line in lines)


def weights_line(weights: str) -> str:
    if weights == "fp16":
        return "weights fp16 (safetensors)."
    if weights == "fp32":
        return f"weights {weights} (safetensors)."
    return (f"token table {weights} (one fp16 scale per row), other weights fp16 (safetensors); the figures below "
            "are those of these weights.")


def language_rows(flores, trained: dict[str, int]) -> list[str]:
    """One row per training language, most pairs first, with the FLORES scores of each of its labels."""
    rows = []
    for lang, n in sorted(trained.items(), key=lambda kv: -kv[1]):
        if lang == "eng":
            continue
        labels = [s for s in flores.scores if _norm(s.lang) == lang]
        if labels:
            rows += [f"| {lang} | {n:,} | {s.lang} | {s.to_pivot:.1%} | {s.from_pivot:.1%} |" for s in labels]
        else:
            rows.append(f"| {lang} | {n:,} | – | – | – |")
    return rows


def bible_lines(data: Path) -> list[str]:
    with open(data / "bible_sources.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [f"- `{r['lang']}`: {r['title']} ({r['license']}; {r['copyright'] or 'no copyright line'}; {r['url']})"
            for r in rows]


def ud_lines(data: Path, file: str) -> list[str]:
    """The UD treebanks of `file` (`ud_text_en.parquet`, `mono/ud_text.parquet`), each with its language, licence,
    contributors and reference, from the table in the data README's section on that file."""
    readme = (data / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(f"### `{file}`"):]
    section = section[: section.index("\n#", 1)]
    rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in section.splitlines()
            if row.startswith("| ")]
    lang, licence = rows[0].index("lang"), rows[0].index("licence")
    return [f"- {cells[0]} (`{cells[lang]}`, {cells[licence]}): {cells[-1]}" for cells in rows[1:]
            if cells[0].startswith("`UD_")]


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
    if tok.get("teacher_words"):
        joined += (f", then with up to {tok['teacher_words']:,} of the teacher's whole words that it cut into "
                   f"{tok['teacher_words_cut']} or more pieces, in every script")
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
    if cfg.get("mono"):
        uses.append(f"then the rows of the pieces of {info['mono_sentences']:,} monolingual sentences move towards "
                    "its vectors of those sentences, mapped into the model's space by a ridge map fitted on English "
                    f"sentences ({cfg['mono_epochs']} epochs of in-batch InfoNCE; a piece seen n times in the pairs "
                    f"moves {cfg['teacher_prior']} / (n + {cfg['teacher_prior']}) of the way; `emsearch "
                    "cache-teacher --mono`)")
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
