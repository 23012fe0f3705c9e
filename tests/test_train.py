"""Training learns: a tiny model retrieves held-out synthetic translations far above chance."""

from __future__ import annotations

import numpy as np

from emsearch.encoder import Encoder
from emsearch.evaluate import top1_accuracy

from conftest import synthetic_pairs


def test_tiny_training_learns_cross_lingual_retrieval(tiny_model):
    eng, other = synthetic_pairs(200, seed=99)  # unseen sentences
    enc = Encoder.load(tiny_model)
    accuracy = top1_accuracy(enc.encode(other), enc.encode(eng))
    assert accuracy > 0.8, accuracy  # chance is 1/200
