"""One shared SentencePiece vocabulary for every language: training it, and turning text into token ids.

The training sample is drawn per language with p ∝ n^alpha (alpha < 1, as in XLM), so a language with 500
sentences still gets pieces of its own next to one with 40,000. Byte fallback means no input is ever <unk>.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from emsearch.atomic import write_bytes
from emsearch.config import TokenizerConfig

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def temperature_quotas(counts: Mapping[str, int], total: int, alpha: float) -> dict[str, int]:
    """How many items to draw from each language: p ∝ n^alpha, never more than a language has."""
    langs = sorted(counts)
    n = np.array([counts[lang] for lang in langs], dtype=np.float64)
    w = np.where(n > 0, n**alpha, 0.0)  # an empty language gets nothing, even at alpha = 0
    if not w.sum():
        return dict.fromkeys(langs, 0)
    p = w / w.sum()
    quota = np.minimum(np.round(p * total), n).astype(int)
    return dict(zip(langs, quota.tolist()))


def sample_by_language(texts_by_lang: Mapping[str, Sequence[str]], total: int, alpha: float, seed: int) -> list[str]:
    quotas = temperature_quotas({k: len(v) for k, v in texts_by_lang.items()}, total, alpha)
    rng = np.random.default_rng(seed)
    sample: list[str] = []
    for lang, quota in quotas.items():
        texts = texts_by_lang[lang]
        for i in rng.choice(len(texts), size=quota, replace=False):
            sample.append(texts[i])
    rng.shuffle(sample)  # type: ignore[arg-type]
    return sample


def train_tokenizer(texts_by_lang: Mapping[str, Sequence[str]], config: TokenizerConfig, out_path: str | Path) -> Path:
    """Train the SentencePiece model on a temperature-sampled sample and write it atomically to `out_path`."""
    sample = sample_by_language(texts_by_lang, config.sample_sentences, config.alpha, config.seed)
    if not sample:
        raise ValueError("no text to train the tokenizer on")
    model = io.BytesIO()
    spm.set_random_generator_seed(config.seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sample),
        model_writer=model,
        vocab_size=config.vocab_size,
        model_type=config.model_type,
        character_coverage=config.character_coverage,
        byte_fallback=True,
        normalization_rule_name="nmt_nfkc_cf" if config.lowercase else "nmt_nfkc",
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        input_sentence_size=len(sample),
        max_sentence_length=4096,
        shuffle_input_sentence=False,
        hard_vocab_limit=False,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out_path, model.getvalue())
    return out_path


class Tokenizer:
    """SentencePiece ids for a batch of sentences: each truncated to `max_len - 1` pieces, then EOS.

    EOS on every sentence means an empty string still has one token to pool over.
    """

    def __init__(self, model_path: str | Path, max_len: int):
        self.path = Path(model_path)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        self.max_len = max_len

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        keep = self.max_len - 1
        # No sentence needs more than ~32 characters per kept piece; clipping first keeps a 1 MB line cheap.
        ids = self.sp.encode([t[: keep * 32] for t in texts], out_type=int)
        return [seq[:keep] + [EOS_ID] for seq in ids]

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts have more pieces than the model keeps (they are encoded from their first max_len - 1)."""
        keep = self.max_len - 1
        clipped = [t[: keep * 32] for t in texts]  # `encode` clips the same way before tokenizing
        return sum(len(t) > keep * 32 or len(ids) > keep
                   for t, ids in zip(texts, self.sp.encode(clipped, out_type=int)))

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)
