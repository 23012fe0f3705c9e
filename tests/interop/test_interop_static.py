"""`build-index --model FOLDER` with a model2vec / sentence-transformers static model made here: a word table in
which each synthetic English word and its German counterpart share one random row, so a bag of words retrieves
the translation whatever the word order. The index answers through the usual reader, records the model, verifies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import WORDS, run_cli
from emsearch.encoder import Encoder
from emsearch.index.reader import Index
from toy_index import build_toy_index

tokenizers = pytest.importorskip("tokenizers", reason="the interop extra is not installed: pip install -e '.[interop]'")
model2vec = pytest.importorskip("model2vec", reason="the interop extra is not installed")
sentence_transformers = pytest.importorskip("sentence_transformers", reason="the interop extra is not installed")


def word_model() -> tuple[object, np.ndarray]:
    """A WordLevel tokenizer over both synthetic vocabularies (see conftest.synthetic_pairs) and its table."""
    eng = [f"ka{i:03d}" for i in range(WORDS)]
    deu = [f"{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}lo" for i in range(WORDS)]
    vocab = {"[UNK]": 0, **{w: 1 + i for i, w in enumerate(eng)}, **{w: 1 + WORDS + i for i, w in enumerate(deu)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    rows = np.random.default_rng(0).standard_normal((WORDS, 32)).astype(np.float32)
    return tok, np.concatenate([np.zeros((1, 32), np.float32), rows, rows])


def save(format: str, path: Path) -> object:
    """The model saved by its own library; returns the library's encode."""
    tok, table = word_model()
    if format == "model2vec":
        model = model2vec.StaticModel(vectors=table, tokenizer=tok, normalize=True)
        model.save_pretrained(path)
        return model.encode
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    model = sentence_transformers.SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=table),
                                                               Normalize()], device="cpu")
    model.save(str(path))
    return model.encode


@pytest.mark.parametrize("format", ["model2vec", "sentence-transformers"])
def test_build_index_with_a_static_model_folder(tmp_path, monkeypatch, capsys, format):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    theirs = save(format, tmp_path / "model")
    texts = ["ka001 ka017 ka099", "balo ablo zzz-unknown", ""]
    cos = (Encoder.load(tmp_path / "model").encode(texts) * theirs(texts)).sum(1)
    np.testing.assert_allclose(cos[:2], 1.0, atol=1e-5)  # the empty text: zeros on both sides

    toy = build_toy_index(tmp_path, tmp_path / "model")
    manifest = json.loads((toy.path / "manifest.json").read_text())
    assert manifest["model"]["format"] == format and manifest["model"]["path"] == str((tmp_path / "model").resolve())
    with Index.open(toy.path) as index:  # the model is found again from the manifest
        assert index.model_id == manifest["model"]["id"]
        hits = index.search(toy.deu[:20], k=1, langs=["en"])
    assert [h[0].text for h in hits] == toy.eng[:20]
    assert run_cli(["verify", toy.path], capsys, monkeypatch)[0] == 0


def test_a_transformer_sentence_transformers_folder_is_refused(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    with pytest.raises(Exception, match="only StaticEmbedding"):
        Encoder.load(tmp_path)
