"""`emsearch export`: model2vec and sentence-transformers load the folder offline and give emsearch's vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from emsearch.config import ModelConfig
from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder
from emsearch.interop.export import ExportError, export_model, static_rows
from emsearch.model import EMSEncoder
from emsearch.tokenizer import Tokenizer


model2vec = pytest.importorskip("model2vec", reason="the interop extra is not installed: pip install -e '.[interop]'")
sentence_transformers = pytest.importorskip("sentence_transformers", reason="the interop extra is not installed")
yaml = pytest.importorskip("yaml", reason="the interop extra is not installed")  # comes with it

ROOT = Path(__file__).resolve().parents[2]
FLORES = ROOT.parent / "shared/data/dev/retrieval/flores_dev.parquet"
LIBRARIES = ("model2vec", "sentence-transformers")


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No network: every folder must load from disk alone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load(device="cpu")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("exported")
    return {f: export_model(DEFAULT_MODEL_DIR, tmp / f, format=f) for f in LIBRARIES}


def load(format: str, path: Path):
    """The library's own loader; `encode` → unit vectors as numpy."""
    if format == "model2vec":
        return model2vec.StaticModel.from_pretrained(path).encode
    model = sentence_transformers.SentenceTransformer(str(path), device="cpu")
    return lambda texts: model.encode(texts, batch_size=1024)


def assert_same_vectors(encoder, exported, format, texts):
    cos = (load(format, exported[format])(texts) * encoder.encode(texts)).sum(1)
    assert cos.min() >= 0.9999, (cos.min(), texts[int(cos.argmin())])


@pytest.mark.parametrize("format", LIBRARIES)
def test_example_corpus_vectors_match(encoder, exported, format):
    assert_same_vectors(encoder, exported, format, pq.read_table(ROOT / "examples/corpus.parquet").column("text")
                        .to_pylist())


@pytest.mark.slow
@pytest.mark.skipif(not FLORES.is_file(), reason=f"{FLORES} is absent")
@pytest.mark.parametrize("format", LIBRARIES)
def test_flores_dev_vectors_match(encoder, exported, format):
    assert_same_vectors(encoder, exported, format, pq.read_table(FLORES, columns=["text"]).column("text").to_pylist())


def test_sentence_transformers_loads_the_model2vec_folder_too(encoder, exported):
    texts = ["Guten Morgen", "東京は晴れです。"]
    cos = (load("sentence-transformers", exported["model2vec"])(texts) * encoder.encode(texts)).sum(1)
    assert cos.min() >= 0.9999


@pytest.mark.parametrize("format", LIBRARIES)
def test_card_has_hub_front_matter_above_the_bundle_card(exported, format):
    text = (exported[format] / "README.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == format and "deu" in meta["language"] and meta["license"]
    results = meta["model-index"][0]["results"]
    flores = round(100 * json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["dev"]["flores_average"], 1)
    assert any(r["dataset"]["name"] == "FLORES-200 dev" and r["metrics"][0]["value"] == flores for r in results)
    assert (DEFAULT_MODEL_DIR / "README.md").read_text(encoding="utf-8").strip() in body


@pytest.mark.slow
def test_cli_export_equals_emsearch_embed(tmp_path, capsys, monkeypatch):
    (tmp_path / "in.txt").write_text("Guten Morgen\n", encoding="utf-8")
    assert run_cli(["export", DEFAULT_MODEL_DIR, tmp_path / "m", "--format", "model2vec"], capsys, monkeypatch)[0] == 0
    assert run_cli(["embed", tmp_path / "in.txt", "-o", tmp_path / "v.npy"], capsys, monkeypatch)[0] == 0
    theirs = model2vec.StaticModel.from_pretrained(tmp_path / "m").encode(["Guten Morgen"])
    np.testing.assert_allclose(theirs, np.load(tmp_path / "v.npy"), atol=1e-5)


def test_transformer_model_is_refused():
    cfg = ModelConfig(vocab_size=128000, dim=16, layers=1, heads=1, ffn=16, max_len=8)
    encoder = Encoder(EMSEncoder(cfg), Tokenizer(DEFAULT_MODEL_DIR / "tokenizer.model", 8), {}, "cpu")
    with pytest.raises(ExportError, match="transformer block"):
        static_rows(encoder)


def test_unknown_format_is_one_line_error(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["export", DEFAULT_MODEL_DIR, tmp_path / "x", "--format", "onnx"], capsys, monkeypatch)
    assert code == 2 and err.startswith("error: unknown format 'onnx'") and not (tmp_path / "x").exists()
