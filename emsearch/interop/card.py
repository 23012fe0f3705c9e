"""The model card of an exported folder: YAML front matter the Hugging Face hub reads (languages, licence,
library, tags, the dev figures as model-index), above the card the bundle already has.

The YAML is written by hand: every value is a JSON scalar or a list of them, which YAML reads as written.
"""

from __future__ import annotations

import json
from typing import Any

LIBRARIES = {"model2vec": "model2vec", "sentence-transformers": "sentence-transformers"}
USAGE = {
    "model2vec": 'from model2vec import StaticModel\n\nmodel = StaticModel.from_pretrained("{path}")',
    "sentence-transformers": 'from sentence_transformers import SentenceTransformer\n\n'
                             'model = SentenceTransformer("{path}")',
}


def _yaml(value: Any, indent: int = 0) -> str:
    """Block YAML of nested dicts and lists of JSON scalars."""
    pad = " " * indent
    if isinstance(value, dict):
        return "".join(f"{pad}{k}:" + (f"\n{_yaml(v, indent + 2)}" if isinstance(v, (dict, list)) and v
                                        else f" {json.dumps(v, ensure_ascii=False)}\n") for k, v in value.items())
    return "".join(f"{pad}-" + (f"\n{_yaml(v, indent + 2)}" if isinstance(v, (dict, list))
                                else f" {json.dumps(v, ensure_ascii=False)}\n") for v in value)


def _results(dev: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's dev figures (`config.json` "dev", written by training/evaluate_and_card.py) as model-index."""
    results = []
    if "flores_average" in dev:
        n = len(dev.get("flores_per_lang", {}))
        results.append({
            "task": {"type": "translation-retrieval", "name": "Bitext retrieval"},
            "dataset": {"name": "FLORES-200 dev", "type": "facebook/flores", "split": "dev"},
            "metrics": [{"type": "accuracy", "value": round(100 * dev["flores_average"], 1),
                         "name": f"top-1 eng↔X retrieval accuracy, mean of both directions over {n} languages"}],
        })
    for pair, f1 in dev.get("mining_f1", {}).items():
        results.append({
            "task": {"type": "bitext-mining", "name": "Bitext mining"},
            "dataset": {"name": f"mining dev set {pair}", "type": "bucc-style", "split": "dev"},
            "metrics": [{"type": "f1", "value": round(100 * f1, 1),
                         "name": "F1 at the pair's threshold (ratio margin, k = 4)"}],
        })
    return results


def model_card(info: dict[str, Any], card: str, *, format: str, name: str) -> str:
    """Front matter for `format`, then `card` (the bundle's README), then how to load the folder."""
    meta: dict[str, Any] = {
        "language": sorted(info.get("languages", {})),
        "license": info.get("license", "apache-2.0"),
        "library_name": LIBRARIES[format],
        "pipeline_tag": "sentence-similarity",
        "tags": ["emsearch", "static-embeddings", "sentence-similarity", "feature-extraction", "multilingual",
                 LIBRARIES[format]],
    }
    if results := _results(info.get("dev", {})):
        meta["model-index"] = [{"name": name, "results": results}]
    usage = USAGE[format].format(path=name)
    return (f"---\n{_yaml(meta)}---\n\n{card.rstrip()}\n\n## Use with {LIBRARIES[format]}\n\n"
            f"Exported by `emsearch export` (emsearch model id `{info.get('model_id')}`): the same unit vectors "
            f"as emsearch's own encoder.\n\n```python\n{usage}\nvectors = model.encode([\"Guten Morgen\"])\n```\n")
