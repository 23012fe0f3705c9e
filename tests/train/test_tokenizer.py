"""Tokenizer: temperature sampling of the training text, SentencePiece training, and encoding rules."""

from __future__ import annotations

from collections import Counter

import pytest

from emsearch.config import TokenizerConfig
from emsearch.tokenizer import (EOS_ID, UNK_ID, Tokenizer, sample_by_language, temperature_quotas,
                                train_tokenizer)

from conftest import synthetic_pairs


def test_temperature_quotas_hand_computed():
    # alpha = 0.5: weights √100 = 10 and √10000 = 100, so 110 draws split 10 / 100.
    assert temperature_quotas({"a": 100, "b": 10_000}, total=110, alpha=0.5) == {"a": 10, "b": 100}
    # alpha = 1 is proportional sampling; alpha = 0 is uniform over languages.
    assert temperature_quotas({"a": 100, "b": 300}, total=40, alpha=1.0) == {"a": 10, "b": 30}
    assert temperature_quotas({"a": 100, "b": 300}, total=40, alpha=0.0) == {"a": 20, "b": 20}


def test_temperature_quotas_never_exceed_what_a_language_has():
    # Uniform would give 500 each, but "a" only has 5 sentences.
    assert temperature_quotas({"a": 5, "b": 10_000}, total=1000, alpha=0.0) == {"a": 5, "b": 500}


def test_temperature_sampling_favours_small_languages_over_proportional():
    quotas = temperature_quotas({"small": 500, "big": 40_000}, total=2000, alpha=0.3)
    # Proportional sampling would give "small" 25 of 2,000; p ∝ n^0.3 gives it 500^0.3 / (500^0.3 + 40000^0.3).
    assert quotas["small"] == round(2000 * 500**0.3 / (500**0.3 + 40_000**0.3)) == 423
    assert quotas["big"] == 2000 - 423


def test_temperature_quotas_give_empty_languages_nothing():
    assert temperature_quotas({"a": 0, "b": 10}, total=10, alpha=0.0) == {"a": 0, "b": 10}
    assert temperature_quotas({"a": 0}, total=10, alpha=0.3) == {"a": 0}


def test_sample_by_language_is_reproducible_and_follows_the_quotas():
    texts = {"a": [f"a{i}" for i in range(100)], "b": [f"b{i}" for i in range(10_000)]}
    sample = sample_by_language(texts, total=110, alpha=0.5, seed=3)
    assert sample == sample_by_language(texts, total=110, alpha=0.5, seed=3)
    assert sample != sample_by_language(texts, total=110, alpha=0.5, seed=4)
    assert Counter(t[0] for t in sample) == {"a": 10, "b": 100}
    assert len(set(sample)) == len(sample)  # drawn without replacement


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    eng, other = synthetic_pairs(2000)
    return {"eng": eng, "deu": other}


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_train_tokenizer_is_deterministic_and_atomic(tmp_path, corpus, model_type):
    cfg = TokenizerConfig(vocab_size=300, sample_sentences=3000, model_type=model_type)
    first = train_tokenizer(corpus, cfg, tmp_path / "a" / "tok.model")
    second = train_tokenizer(corpus, cfg, tmp_path / "b" / "tok.model")
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["tok.model"]  # no temp file left behind
    assert Tokenizer(first, max_len=16).vocab_size == 300


def test_train_tokenizer_without_text_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer({"eng": []}, TokenizerConfig(vocab_size=300), tmp_path / "tok.model")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, corpus) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "tok.model"
    train_tokenizer(corpus, TokenizerConfig(vocab_size=300, sample_sentences=3000, model_type="bpe"), path)
    return Tokenizer(path, max_len=16)


def test_every_sentence_ends_in_eos_and_fits_max_len(tokenizer):
    texts = ["", "ka001", "ka001 ka002 ka003", "ka001 " * 200]
    ids = tokenizer.encode(texts)
    assert ids[0] == [EOS_ID]  # an empty string still has a token to pool over
    assert all(seq[-1] == EOS_ID and EOS_ID not in seq[:-1] for seq in ids)
    assert [len(seq) for seq in ids][:3] == [1, len(tokenizer.pieces("ka001")) + 1,
                                             len(tokenizer.pieces("ka001 ka002 ka003")) + 1]
    assert len(ids[3]) == 16


def test_truncation_keeps_the_beginning(tokenizer):
    long = " ".join(f"ka{i % 120:03d}" for i in range(300))
    assert tokenizer.encode([long])[0][:15] == tokenizer.encode([long[:200]])[0][:15]


def test_unseen_characters_fall_back_to_bytes_not_unk(tokenizer):
    ids = tokenizer.encode(["€ 😀 ü 中文"])[0]
    assert UNK_ID not in ids
    assert len(ids) > 5


def test_normaliser_lowercases_and_applies_nfkc(tokenizer):
    assert tokenizer.encode(["KA001 Ka002"]) == tokenizer.encode(["ka001 ka002"])
    assert tokenizer.encode(["ｋａ００１"]) == tokenizer.encode(["ka001"])  # full-width → ASCII (NFKC)
