"""A model2vec or sentence-transformers static model folder as an emsearch `Encoder`, so that
`build-index --model FOLDER` (and query, mine, serve, verify on its index) run with a model people already have.

    encoder = Encoder.load("potion-multilingual-128M")     # static_parts reads such a folder

The folder's own tokenizer (`tokenizer.json`, read with the `tokenizers` package) and table are used as the
library would use them: model2vec drops unknown tokens, clips each text to `max_length` × the median piece length
in characters and reads at most `max_length` tokens (config.json, default 512); sentence-transformers reads what
its tokenizer's truncation keeps (512 tokens where it sets none). Per-token weights and a vocabulary mapping are
folded into the rows. The vectors are then L2-normalised, as an index compares them, whatever the folder's
`normalize` says. Token id i is row i + 1 here: emsearch's encoder reserves id 0 for padding.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from emsearch.atomic import file_sha256
from emsearch.config import ModelConfig
from emsearch.errors import ModelLoadError
from emsearch.model import EMSEncoder

DEFAULT_MAX_LENGTH = 512  # model2vec's default; also the cap for a tokenizer that does not truncate


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ModelLoadError("a model2vec / sentence-transformers folder needs the tokenizers package: "
                             "pip install 'emsearch[interop]'") from None
    return tokenizers


class StaticTokenizer:
    """A `tokenizer.json` answering like emsearch's `Tokenizer`: ids (shifted by one) per text, no special tokens."""

    def __init__(self, path: Path, max_len: int, *, drop_unk: bool, clip_chars: int | None):
        self.path = path
        self.tok = _tokenizers().Tokenizer.from_file(str(path))
        self.tok.no_padding()
        self.tok.enable_truncation(max_len)
        self.max_len = max_len
        self.clip_chars = clip_chars
        self.unk = json.loads(self.tok.to_str())["model"].get("unk_id") if drop_unk else None
        if drop_unk and self.unk is None and (token := getattr(self.tok.model, "unk_token", None)) is not None:
            self.unk = self.tok.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size() + 1

    def _encodings(self, texts: Sequence[str]):
        return self.tok.encode_batch_fast([t[: self.clip_chars] for t in texts], add_special_tokens=False)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [[i + 1 for i in e.ids if i != self.unk] for e in self._encodings(texts)]

    def count_truncated(self, texts: Sequence[str]) -> int:
        clip = self.clip_chars or float("inf")
        return sum(len(t) > clip or bool(e.overflowing) for t, e in zip(texts, self._encodings(texts)))

    def pieces(self, text: str) -> list[str]:
        return self._encodings([text])[0].tokens


def _fold(tensors: dict[str, np.ndarray], name: str) -> np.ndarray:
    """One row per token id: model2vec's `embeddings[mapping[i]] * weights[i]`, or the table as it is."""
    rows = tensors[name].astype(np.float32)
    if "mapping" in tensors:
        rows = rows[tensors["mapping"].astype(np.int64)]
    if "weights" in tensors:
        rows = rows * tensors["weights"].astype(np.float32)[:, None]
    return rows


def _layout(root: Path) -> tuple[str, Path, int | None]:
    """(format, folder holding model.safetensors and tokenizer.json, model2vec's max_length or None). A model2vec
    folder (an "embeddings" table at the top) is read as model2vec reads it, though it has a modules.json too."""
    config, weights = root / "config.json", root / "model.safetensors"
    if config.is_file() and weights.is_file() and "embeddings" in safe_open(str(weights), "numpy").keys():
        return "model2vec", root, json.loads(config.read_text(encoding="utf-8")).get("max_length", DEFAULT_MAX_LENGTH)
    listed = root / "modules.json"
    modules = json.loads(listed.read_text(encoding="utf-8")) if listed.is_file() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "StaticEmbedding" or any(k != "Normalize" for k in kinds[1:]):
        raise ModelLoadError(f"{root} is neither an emsearch bundle nor a static model2vec / sentence-transformers "
                             f"model (modules: {', '.join(kinds) or 'none'}); only StaticEmbedding [+ Normalize] "
                             "models index with emsearch")
    return "sentence-transformers", root / (modules[0].get("path") or "."), None


def static_parts(root: str | Path) -> tuple[EMSEncoder, StaticTokenizer, dict]:
    """The model, tokenizer and info of the static model in `root`, as `Encoder.load` takes them (mean pooling
    over its rows, unit-length output)."""
    root = Path(root)
    format, folder, max_length = _layout(root)
    weights, tokenizer_file = folder / "model.safetensors", folder / "tokenizer.json"
    if not weights.is_file() or not tokenizer_file.is_file():
        raise ModelLoadError(f"{folder} lacks model.safetensors or tokenizer.json: is the {format} model complete?")
    tensors = load_file(str(weights))
    rows = _fold(tensors, "embedding.weight" if "embedding.weight" in tensors else "embeddings")
    if format == "model2vec":
        cap = max_length or DEFAULT_MAX_LENGTH
        tokenizer = StaticTokenizer(tokenizer_file, cap, drop_unk=True, clip_chars=(
            cap * int(statistics.median(len(t) for t in _tokenizers().Tokenizer.from_file(str(tokenizer_file))
                                        .get_vocab())) if max_length else None))
    else:
        truncation = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("truncation") or {}
        tokenizer = StaticTokenizer(tokenizer_file, truncation.get("max_length", DEFAULT_MAX_LENGTH),
                                    drop_unk=False, clip_chars=None)
    if tokenizer.vocab_size - 1 > len(rows):
        raise ModelLoadError(f"{root}: the tokenizer has {tokenizer.vocab_size - 1} tokens, the table {len(rows)} rows")
    cfg = ModelConfig(vocab_size=len(rows) + 1, dim=rows.shape[1], layers=0, heads=1, ffn=0,
                      max_len=tokenizer.max_len, dropout=0.0, pooling="mean", proj_dim=0)
    model = EMSEncoder(cfg)
    with torch.no_grad():
        model.tok_emb.weight[1:] = torch.from_numpy(rows)
    digest = hashlib.sha256((file_sha256(weights) + file_sha256(tokenizer_file)).encode()).hexdigest()
    info = {"model_id": digest[:16], "format": format, "source": str(root.resolve())}
    return model, tokenizer, info  # the tokenizer answers like emsearch's Tokenizer
