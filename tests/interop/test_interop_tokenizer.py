"""The exported tokenizer.json gives the ids emsearch's SentencePiece tokenizer gives (EOS as the marker piece, first).

The only texts that differ are those that normalise to nothing (the empty string, control characters alone):
SentencePiece gives EOS alone, tokenizers no token (so model2vec / sentence-transformers give a zero vector).
"""

from __future__ import annotations

import json

import pytest
import sentencepiece as spm

from emsearch.encoder import DEFAULT_MODEL_DIR
from emsearch.interop.tokenizer_json import TokenizerExportError, tokenizer_spec
from emsearch.tokenizer import EOS_ID, Tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="the interop extra is not installed: pip install -e '.[interop]'")

SAMPLE = [
    "Guten Morgen", "Wie wird das Wetter morgen?", " ", "   leading and  inner   spaces  ", "\ttabs\nand\r\nlines",
    "東京は晴れです。", "我们明天去北京。", "서울의 날씨", "ภาษาไทย", "😀👍🏽 family 👨‍👩‍👧 🇩🇪", "ＡＢＣ ﬁ Straße İstanbul ΣΊΣΥΦΟΣ",
    "</s> <unk> <0xE0> <s> <pad>", "\x01abc\x7f", "abc\x00def", "\ufffd \ufeffbom \u200bzw\u200dj", "▁foo ▁ bar▁",
    "E\u0301 \u0301lone mark", "ẹ̀ e\u0300\u0323 é\u0323", "শোভা \u09c7\u09be \u09a8\u09c7\u09d7", "ثَّ ثَّ",
    "I\u0331 ɔ́ Ɔ́", "ꙮ 𓀀 𐍈 \U0010fffd", "x" * 5000, "日本語" * 300,
    # A joined script with a character the vocabulary lacks (U+0C47, a Telugu vowel sign): unknown characters must
    # cost what they cost in SentencePiece, or another path wins.
    "సూర్యుని కేంద్రం నుండి ఎక్కువ దూరం వెళ్లే కొద్దీ గ్యాస్",
]


def _exported(model_path, max_len: int):
    hf = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_spec(model_path, max_len)))
    n = spm.SentencePieceProcessor(model_file=str(model_path)).get_piece_size()

    def encode(texts: list[str]) -> list[list[int]]:
        out = []
        for e in hf.encode_batch(texts, add_special_tokens=False):
            ids = [EOS_ID if i == n else i for i in e.ids]
            out.append(ids[1:] + ids[:1])  # the marker comes first; emsearch appends EOS
        return out

    return encode


def test_default_tokenizer_ids_match_on_a_multilingual_sample():
    ours = Tokenizer(DEFAULT_MODEL_DIR / "tokenizer.model", 256)
    assert _exported(DEFAULT_MODEL_DIR / "tokenizer.model", 256)(SAMPLE) == ours.encode(SAMPLE)


def test_text_that_normalises_to_nothing_has_no_tokens():
    assert _exported(DEFAULT_MODEL_DIR / "tokenizer.model", 256)(["", "\x01\x02"]) == [[], []]


def test_another_unigram_model_with_its_own_normaliser(tmp_path):
    """Generic: a fresh Unigram model with another normaliser (nmt_nfkc: no case folding) matches too."""
    text = [f"Das Wetter ist {w} heute, sagt {n}. Straße Ünïcödé {i}" for i, (w, n) in
            enumerate((w, n) for w in ("schön", "kalt", "warm", "nass") for n in ("Anna", "Öztürk", "Émile"))] * 20
    (tmp_path / "t.txt").write_text("\n".join(text), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "u"), vocab_size=400,
                                   hard_vocab_limit=False, model_type="unigram", byte_fallback=True,
                                   normalization_rule_name="nmt_nfkc", character_coverage=1.0,
                                   pad_id=0, unk_id=1, bos_id=2, eos_id=3, minloglevel=2)
    sample = [t.replace("<0xE0>", "") for t in SAMPLE]  # "<" is no piece of this small vocabulary (tokenizer_json)
    assert _exported(tmp_path / "u.model", 16)(sample) == Tokenizer(tmp_path / "u.model", 16).encode(sample)


def test_a_bpe_model_is_refused(tmp_path):
    (tmp_path / "t.txt").write_text("\n".join(f"word{i} other{i % 7}" for i in range(300)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "b"), vocab_size=60,
                                   model_type="bpe", minloglevel=2)
    with pytest.raises(TokenizerExportError, match="not a Unigram"):
        tokenizer_spec(tmp_path / "b.model", 16)


def test_user_defined_pieces_win_as_in_sentencepiece(tmp_path):
    text = [f"Das Wetter ist {w} heute, sagt {n}. [SYM] {i}" for i, (w, n) in
            enumerate((w, n) for w in ("schön", "kalt", "warm") for n in ("Anna", "Émile"))] * 30
    (tmp_path / "t.txt").write_text("\n".join(text), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "u"), vocab_size=400,
                                   hard_vocab_limit=False, model_type="unigram", byte_fallback=True,
                                   character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                                   user_defined_symbols=["[sym]", "xyz"], minloglevel=2)
    sample = ["a[sym]b", "xyzxyz wetter", "[SYM] heute xyz", "abcxyzdef"]
    tokenizer = Tokenizer(tmp_path / "u.model", 64)
    ours = tokenizer.encode(sample)
    assert ours[1].count(tokenizer.sp.piece_to_id("xyz")) == 2  # the symbol is one piece, even inside a word
    assert _exported(tmp_path / "u.model", 64)(sample) == ours
