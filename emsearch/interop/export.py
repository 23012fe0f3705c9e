"""`emsearch export MODEL OUT --format model2vec|sentence-transformers`: a static emsearch model as a folder
that `model2vec.StaticModel.from_pretrained(OUT)` or `sentence_transformers.SentenceTransformer(OUT)` loads offline,
giving the vectors `Encoder.load(MODEL).encode` gives.

    export_model("emsearch/models/default", "/tmp/m", format="model2vec")

The encoder is a weighted mean of token rows, L2-normalised; both libraries take a plain mean and normalise. Each
row is multiplied by its piece's weight exp(clamp(log-weight, -10, 10)): the plain mean of the weighted rows is the
weighted sum over the number of tokens, a positive multiple of the weighted mean, so after normalisation it is the
same vector. The table gains one row, the EOS row (weighted), for the marker piece the tokenizer puts first (see
`tokenizer_json`). Writing needs no extra package; loading the folder needs model2vec or sentence-transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from emsearch.atomic import swap_dir
from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder
from emsearch.errors import EmsearchError
from emsearch.interop.card import model_card
from emsearch.interop.tokenizer_json import tokenizer_spec
from emsearch.tokenizer import EOS_ID

FORMATS = ("model2vec", "sentence-transformers")
NORMALIZE_MODULE = {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"}


class ExportError(EmsearchError):
    """A model or output this export cannot write."""


def static_rows(encoder: Encoder) -> np.ndarray:
    """(vocab + 1, dim) float32: each piece's row times its pooling weight, then the EOS row again (the marker's)."""
    cfg = encoder.config
    if cfg.layers:
        raise ExportError(f"this model has {cfg.layers} transformer block(s): a sentence is more than a mean of its "
                          "token rows, so it cannot be a model2vec or StaticEmbedding model; only static models "
                          "(layers 0, e.g. the cpu-bag preset) export")
    if encoder.tokenizer.vocab_size != cfg.vocab_size:
        raise ExportError(f"the tokenizer has {encoder.tokenizer.vocab_size} pieces, the token table "
                          f"{cfg.vocab_size} rows: re-export the bundle with its own tokenizer")
    model = encoder.model
    with torch.no_grad():
        rows = model.tok_emb.weight.detach().float().cpu()
        if cfg.pooling == "weighted":
            rows = rows * model.tok_weight.weight.detach().float().cpu().clamp(-10.0, 10.0).exp()
    return torch.cat([rows, rows[EOS_ID : EOS_ID + 1]]).numpy()


def _write_json(path: Path, value, indent: int | None = 2) -> None:
    path.write_text(json.dumps(value, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _model2vec(tmp: Path, rows: np.ndarray, tokenizer: dict, encoder: Encoder) -> None:
    """model2vec's layout (what `StaticModel.save_pretrained` writes), which sentence-transformers loads too."""
    save_file({"embeddings": rows}, str(tmp / "model.safetensors"))
    _write_json(tmp / "tokenizer.json", tokenizer, indent=None)
    _write_json(tmp / "config.json", {
        "model_type": "model2vec", "architectures": ["StaticModel"], "tokenizer_name": "emsearch",
        "apply_pca": None, "hidden_dim": int(rows.shape[1]), "seq_length": encoder.config.max_len,
        "normalize": True, "max_length": encoder.config.max_len, "embedding_dtype": "float32",
        "emsearch_model_id": encoder.model_id})
    _write_json(tmp / "modules.json", [
        {"idx": 0, "name": "0", "path": ".", "type": "sentence_transformers.models.StaticEmbedding"},
        NORMALIZE_MODULE])


def _sentence_transformers(tmp: Path, rows: np.ndarray, tokenizer: dict, encoder: Encoder) -> None:
    """sentence-transformers' layout: a StaticEmbedding module, then Normalize."""
    static = tmp / "0_StaticEmbedding"
    static.mkdir()
    save_file({"embedding.weight": rows}, str(static / "model.safetensors"))
    _write_json(static / "tokenizer.json", tokenizer, indent=None)
    (tmp / "1_Normalize").mkdir()
    _write_json(tmp / "1_Normalize" / "config.json", {})
    _write_json(tmp / "modules.json", [
        {"idx": 0, "name": "0", "path": "0_StaticEmbedding", "type": "sentence_transformers.models.StaticEmbedding"},
        NORMALIZE_MODULE])
    _write_json(tmp / "config_sentence_transformers.json", {
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine",
        "emsearch_model_id": encoder.model_id})


def export_model(model: str | Path | None, out: str | Path, *, format: str) -> Path:
    """Write the static model at `model` (None: the default model) to the folder `out` in `format`; the folder
    appears whole or not at all, replacing one already there."""
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    root = Path(model) if model is not None else DEFAULT_MODEL_DIR
    encoder = Encoder.load(root, device="cpu")
    rows = static_rows(encoder)
    tokenizer = tokenizer_spec(encoder.tokenizer.path, encoder.config.max_len)
    out = Path(out)
    if out.resolve() == root.resolve():
        raise ExportError(f"{out} is the model itself: give another output folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (_model2vec if format == "model2vec" else _sentence_transformers)(tmp, rows, tokenizer, encoder)
    card = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").is_file() else ""
    (tmp / "README.md").write_text(model_card(encoder.info, card, format=format, name=out.name), encoding="utf-8")
    swap_dir(tmp, out)
    return out
