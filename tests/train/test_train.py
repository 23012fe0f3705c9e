"""Training learns, each objective on its own too, and a resumed run is bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

import emsearch.train.loop as train_module
from emsearch.config import PRESETS, TrainConfig, load_json
from emsearch.encoder import Encoder
from emsearch.errors import EmsearchError
from emsearch.evaluate import top1_accuracy
from emsearch.train import train

from conftest import WORDS, synthetic_pairs, tiny_config, write_pairs


def test_tiny_training_learns_cross_lingual_retrieval(tiny_model):
    eng, other = synthetic_pairs(200, seed=99)  # unseen sentences
    enc = Encoder.load(tiny_model)
    accuracy = top1_accuracy(enc.encode(other), enc.encode(eng))
    assert accuracy > 0.8, accuracy  # chance is 1/200
    assert "threads of" in enc.info["trained_on"]  # the model card says what the minutes were spent on


@pytest.mark.slow
def test_contrastive_objective_alone_learns(tmp_path):
    data = write_pairs(tmp_path / "pairs.parquet", 3000)
    enc = Encoder.load(train(tiny_config(tmp_path, data, steps=100, xtr_weight=0.0, warmup=10,
                                         checkpoint_every=1000), progress=False))
    eng, other = synthetic_pairs(200, seed=99)
    accuracy = top1_accuracy(enc.encode(other), enc.encode(eng))
    assert accuracy > 0.5, accuracy  # chance is 1/200; ~0.9 when it works


def test_bag_model_with_pair_batches_learns_both_objectives(tmp_path):
    # The shipped shape in miniature: no transformer block, learned token weights, fixed-size pair batches,
    # XTR over the batch vocabulary of part of each batch, contrastive loss on the sentence vector itself.
    data = write_pairs(tmp_path / "pairs.parquet", 3000)
    cfg = tiny_config(tmp_path, data, steps=120, model=PRESETS["tiny-bag"], batch_pairs=128, xtr_pairs=32,
                      xtr_weight=0.2, temperature=0.05, checkpoint_every=1000)
    bundle = train(cfg, progress=False)
    enc = Encoder.load(bundle)
    eng, other = synthetic_pairs(200, seed=99)
    accuracy = top1_accuracy(enc.encode(other), enc.encode(eng))
    assert accuracy > 0.8, accuracy  # chance is 1/200; a word-for-word mapping is what a bag model learns
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["xtr"] < log[0]["xtr"] and log[-1]["contrastive"] < log[0]["contrastive"]
    weights = load_file(str(bundle / "model.safetensors"))["tok_weight.weight"]
    assert weights.float().std() > 0  # the token weights were trained, not left at the plain mean


def test_init_from_starts_from_a_bundles_token_embeddings(tmp_path):
    data = write_pairs(tmp_path / "pairs.parquet", 600)
    first = train(tiny_config(tmp_path / "a", data, steps=5, model=PRESETS["tiny-bag"], batch_pairs=64),
                  progress=False)
    staged = replace(PRESETS["tiny"], pooling="weighted")  # stage 2: blocks over the stage-1 embeddings
    second = tiny_config(tmp_path / "b", data, steps=1, model=staged, lr=1e-12, warmup=1, init_from=str(first))
    bundle = train(second, progress=False)
    a, b = load_file(str(first / "model.safetensors")), load_file(str(bundle / "model.safetensors"))
    torch.testing.assert_close(b["tok_emb.weight"], a["tok_emb.weight"], atol=1e-3, rtol=1e-3)
    assert (Path(bundle) / "tokenizer.model").read_bytes() == (Path(first) / "tokenizer.model").read_bytes()

    int8 = Encoder.load(first).save(tmp_path / "int8", weights="int8")  # as the shipped model stores its table
    bundle = train(replace(second, out=str(tmp_path / "c"), init_from=str(int8)), progress=False)
    c = load_file(str(bundle / "model.safetensors"))
    torch.testing.assert_close(c["tok_emb.weight"], a["tok_emb.weight"], atol=2e-3, rtol=2e-3)


def three_way_pairs(n: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """n sentences in 'English' and two made-up languages: each maps words one-to-one (no word shared between
    any two languages), one reverses the word order, the other rotates it."""
    rng = np.random.default_rng(seed)
    eng_words = [f"ka{i:03d}" for i in range(WORDS)]
    deu_words = [f"{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}lo" for i in range(WORDS)]
    fra_words = [f"mi{chr(97 + j % 26)}{chr(97 + (j // 26) % 26)}" for j in np.random.default_rng(1).permutation(WORDS)]
    eng, deu, fra = [], [], []
    for _ in range(n):
        idx = rng.choice(WORDS, size=rng.integers(3, 8), replace=False)
        eng.append(" ".join(eng_words[i] for i in idx))
        deu.append(" ".join(deu_words[i] for i in idx[::-1]))
        fra.append(" ".join(fra_words[i] for i in np.roll(idx, 1)))
    return eng, deu, fra


@pytest.mark.slow
def test_xtr_objective_alone_aligns_languages_through_their_pivot(tmp_path):
    # XTR asks every X→English sentence vector to predict the English bag of tokens through one shared head, so
    # two languages paired with English are pulled onto each other; nothing in XTR ties X to English itself when
    # no token is shared (real languages share many). So the test is German ↔ French, never seen as a pair.
    eng, deu, fra = three_way_pairs(3000, seed=0)
    pq.write_table(pa.table({"lang": ["deu"] * 1500 + ["fra"] * 1500, "text": deu[:1500] + fra[1500:],
                             "eng": eng}), tmp_path / "pairs.parquet")
    cfg = tiny_config(tmp_path, tmp_path / "pairs.parquet", contrastive_weight=0.0, checkpoint_every=1000)
    enc = Encoder.load(train(cfg, progress=False))
    _, deu, fra = three_way_pairs(200, seed=99)
    accuracy = top1_accuracy(enc.encode(deu), enc.encode(fra))
    assert accuracy > 0.05, accuracy  # chance is 1/200; 0.1–0.2 when it works (more with longer training)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["contrastive"] == 0.0 for r in log) and log[-1]["xtr"] < log[0]["xtr"] - 1.0


@pytest.mark.parametrize("preset, batching", [("tiny", {}), ("tiny-bag", {"batch_pairs": 64, "xtr_pairs": 16})])
def test_resume_after_an_interruption_is_bit_identical(tmp_path, monkeypatch, preset, batching):
    # tiny: a transformer with dropout, so masks must be replayed exactly too; tiny-bag: sparse embedding
    # gradients, whose SparseAdam state must be restored as exactly as AdamW's.
    data = write_pairs(tmp_path / "pairs.parquet", 600)
    model = replace(PRESETS[preset], dropout=0.1) if preset == "tiny" else PRESETS[preset]
    common = dict(steps=12, checkpoint_every=5, log_every=4, model=model, **batching)
    straight = train(tiny_config(tmp_path / "a", data, **common), progress=False)

    interrupted = tiny_config(tmp_path / "b", data, **common)
    lr_at = train_module.lr_at

    def interrupt_at_step_7(step, cfg):
        if step == 7:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while step 7 was starting
        return lr_at(step, cfg)

    monkeypatch.setattr(train_module, "lr_at", interrupt_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, progress=False)
    monkeypatch.setattr(train_module, "lr_at", lr_at)
    state = json.loads((tmp_path / "b" / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 7
    resumed = train(interrupted, resume=True, progress=False)

    a = load_file(str(Path(straight).parent / "checkpoint" / "state.safetensors"))
    b = load_file(str(Path(resumed).parent / "checkpoint" / "state.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("opt") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert (straight / "model.safetensors").read_bytes() == (resumed / "model.safetensors").read_bytes()
    assert json.loads((resumed / "config.json").read_text())["train_steps"] == 12


@pytest.mark.parametrize("settings, message", [
    ({"xtr_weight": 0.0, "contrastive_weight": 0.0}, "not both 0"),
    ({"batch_pairs": 8, "batch_langs": 16}, "batch_langs 16 needs batch_pairs"),
    ({"margin": -0.1}, "margin is taken off a cosine"),
])
def test_settings_that_cannot_train_are_refused_before_reading_data(tmp_path, settings, message):
    with pytest.raises(EmsearchError, match=message):
        train(tiny_config(tmp_path, tmp_path / "absent.parquet", **settings), progress=False)


def test_sigterm_checkpoints_like_ctrl_c(tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "pairs.parquet", 300)
    cfg = tiny_config(tmp_path / "run", data, steps=12, checkpoint_every=50, log_every=4)
    lr_at = train_module.lr_at

    def terminate_at_step_5(step, cfg):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stopping the job
        return lr_at(step, cfg)

    monkeypatch.setattr(train_module, "lr_at", terminate_at_step_5)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert signal.getsignal(signal.SIGTERM) is before
    state = json.loads((tmp_path / "run" / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5


def test_the_default_config_is_the_shipped_recipe():
    """`emsearch train --data X` with no recipe trains the default model's way: every setting of
    training/default.json except its files and teacher (the teacher's pieces in the tokenizer and the mono stage
    too) is a default."""
    path = Path(__file__).parents[2] / "training" / "default.json"
    recipe, shipped = json.loads(path.read_text()), load_json(TrainConfig, path)
    local = {"data", "out", "eval_file", "teacher_cache", "teacher_init", "teacher_prior", "mono", "threads", "tokenizer"}
    assert set(recipe) - local, "the recipe sets nothing to compare"
    for name in set(recipe) - local:
        assert getattr(TrainConfig(), name) == getattr(shipped, name), name
    for name in (n for n in recipe["tokenizer"] if not n.startswith("teacher_")):
        assert getattr(TrainConfig().tokenizer, name) == getattr(shipped.tokenizer, name), f"tokenizer.{name}"
