"""The teacher stage: a resumable cache of teacher vectors in draw order, and distillation that uses it."""

from __future__ import annotations

import json
import zlib
from collections import Counter

import numpy as np
import pytest

from emsearch.config import PRESETS, ConfigError
from emsearch.data import ParallelPairs, read_pairs
from emsearch.teacher import TEACHER, TeacherError, TeacherVectors, cache_teacher, draw_order
from emsearch.train import train

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


def test_cache_resumes_and_looks_up_by_sentence(tmp_path):
    teacher = BagTeacher()
    assert cache_teacher(PAIRS, tmp_path, teacher, alpha=0.5, limit=2) == 2
    assert teacher.encoded[0] == "five"
    assert cache_teacher(PAIRS, tmp_path, teacher, alpha=0.5) == 5
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
    cache_teacher(PAIRS, tmp_path, BagTeacher(), alpha=0.5)
    chunk = next(tmp_path.glob("chunk-*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(TeacherError, match="damaged teacher chunk"):
        TeacherVectors.load(tmp_path)
    (tmp_path / "teacher.json").write_text(json.dumps({**TEACHER, "name": "another model"}))
    with pytest.raises(TeacherError, match="another teacher"):
        cache_teacher(PAIRS, tmp_path, BagTeacher(), alpha=0.5)


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path):
    data = write_pairs(tmp_path / "pairs.parquet", 2000)
    cache_teacher(read_pairs([data]), tmp_path / "teacher", BagTeacher(), alpha=0.3, limit=1500)
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
