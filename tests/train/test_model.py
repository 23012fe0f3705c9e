"""The encoder model and its bundle: padding-invariant pooling, save → load → encode round trips, and
`Encoder.encode`'s contract (input order, empty strings, very long lines)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from emsearch.config import PRESETS
from emsearch.encoder import Encoder, ModelLoadError, length_batches
from emsearch.model import EMSEncoder, forward_flops_per_token
from emsearch.tokenizer import Tokenizer

from conftest import synthetic_pairs


def test_forward_flops_per_token_hand_computed():
    # tiny: d=64, ffn=128, 2 layers. Per layer: 2·(4·64² + 2·64·128) matmul FLOPs + 2·2·T·64 for attention.
    # T = 10: 2·(16384 + 16384) + 2560 = 68096; two layers: 136192.
    assert forward_flops_per_token(PRESETS["tiny"], 10) == 136_192


@pytest.mark.parametrize("preset", ["tiny", "tiny-bag"])
def test_padding_does_not_change_a_sentence_vector(preset):
    torch.manual_seed(0)
    model = EMSEncoder(PRESETS[preset]).eval()
    short = torch.tensor([[11, 12, 13, 3]])
    batch = torch.tensor([[11, 12, 13, 3, 0, 0, 0, 0, 0], [21, 22, 23, 24, 25, 26, 27, 28, 3]])
    with torch.no_grad():
        alone, padded = model(short), model(batch)
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(padded[0], padded[1])


def test_bag_model_is_the_token_weighted_mean_of_its_embeddings():
    # Pieces 11 and 12 with learned log-weights log 3 and 0 → weights 3 and 1 (EOS, id 3: weight 1):
    # u = (3·e11 + e12 + e3) / 5, computed here by hand from the table.
    model = EMSEncoder(PRESETS["tiny-bag"]).eval()
    with torch.no_grad():
        model.tok_weight.weight[11] = np.log(3.0)
        u = model(torch.tensor([[11, 12, 3, 0]]))[0]
    e = model.tok_emb.weight.detach()
    torch.testing.assert_close(u, (3 * e[11] + e[12] + e[3]) / 5, atol=1e-6, rtol=1e-5)


def test_blocks_start_as_the_identity_over_the_embeddings():
    # Zero-initialised residual branches: a transformer added over trained embeddings starts where they are.
    model = EMSEncoder(PRESETS["tiny"]).eval()
    x = torch.randn(2, 5, PRESETS["tiny"].dim)
    keep = torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model.blocks[0](x, keep), x)


# --- bundles ---------------------------------------------------------------------------------------------------

SENTENCES = [s for pair in zip(*synthetic_pairs(40, seed=7)) for s in pair]


def test_two_loads_of_a_bundle_encode_identically(tiny_model):
    a = Encoder.load(tiny_model).encode(SENTENCES)
    b = Encoder.load(tiny_model).encode(SENTENCES)
    assert np.array_equal(a, b)


def test_resaving_a_loaded_bundle_is_lossless(tiny_model, tmp_path):
    enc = Encoder.load(tiny_model)
    expected, model_id = enc.encode(SENTENCES), enc.model_id
    fp16 = Encoder.load(enc.save(tmp_path / "fp16"))
    fp32 = Encoder.load(enc.save(tmp_path / "fp32", weights="fp32"))
    assert np.array_equal(fp16.encode(SENTENCES), expected)
    assert np.array_equal(fp32.encode(SENTENCES), expected)  # fp16 values are exact in fp32
    assert fp16.model_id == model_id  # the id is the hash of the weights, and the weights are the same
    assert fp32.model_id != model_id
    assert fp16.info["languages"] == fp32.info["languages"] == {"deu": 3000}


def test_fp32_bundle_is_exact_and_fp16_bundle_is_close(tiny_model, tmp_path):
    torch.manual_seed(1)
    tokenizer = Tokenizer(tiny_model / "tokenizer.model", PRESETS["tiny"].max_len)
    fresh = Encoder(EMSEncoder(PRESETS["tiny"]), tokenizer, {"note": "random weights"}, device="cpu")
    expected = fresh.encode(SENTENCES)
    fp32 = Encoder.load(fresh.save(tmp_path / "fp32", weights="fp32")).encode(SENTENCES)
    fp16 = Encoder.load(fresh.save(tmp_path / "fp16")).encode(SENTENCES)
    assert np.array_equal(fp32, expected)
    cosine = (fp16 * expected).sum(1)
    assert cosine.min() > 0.999 and np.abs(fp16 - expected).max() < 0.01
    assert json.loads((tmp_path / "fp16" / "config.json").read_text())["note"] == "random weights"
    assert fresh.info == {"note": "random weights"}  # the fp32 encoder does not take the fp16 bundle's id


def test_int8_bundle_is_close_smaller_and_stable(tiny_model, tmp_path):
    torch.manual_seed(2)
    shape = PRESETS["tiny-bag"]  # nearly all of a bag model's bytes are its token table
    fresh = Encoder(EMSEncoder(shape), Tokenizer(tiny_model / "tokenizer.model", shape.max_len), {}, device="cpu")
    expected = fresh.encode(SENTENCES)
    int8 = Encoder.load(fresh.save(tmp_path / "int8", weights="int8"))
    fresh.save(tmp_path / "fp16")
    cosine = (int8.encode(SENTENCES) * expected).sum(1)
    assert cosine.min() > 0.999, cosine.min()
    sizes = {name: (tmp_path / name / "model.safetensors").stat().st_size for name in ("int8", "fp16")}
    assert sizes["int8"] < 0.55 * sizes["fp16"], sizes
    assert Encoder.load(int8.save(tmp_path / "again", weights="int8")).model_id == int8.model_id  # lossless


def test_int6_bundle_is_close_smaller_and_stable(tiny_model, tmp_path):
    from emsearch.encoder import pack_weights, unpack_weights

    torch.manual_seed(3)
    shape = PRESETS["tiny-bag"]
    fresh = Encoder(EMSEncoder(shape), Tokenizer(tiny_model / "tokenizer.model", shape.max_len), {}, device="cpu")
    expected = fresh.encode(SENTENCES)
    int6 = Encoder.load(fresh.save(tmp_path / "int6", weights="int6"))
    fresh.save(tmp_path / "fp16")
    assert (int6.encode(SENTENCES) * expected).sum(1).min() > 0.998
    sizes = {name: (tmp_path / name / "model.safetensors").stat().st_size for name in ("int6", "fp16")}
    assert sizes["int6"] < 0.42 * sizes["fp16"], sizes
    assert Encoder.load(int6.save(tmp_path / "again", weights="int6")).model_id == int6.model_id  # lossless
    # Every value of -31..31, in every position of a group of four, comes back.
    table = torch.arange(-31, 33, dtype=torch.float32).clamp(max=31).reshape(2, 32)
    back = unpack_weights(pack_weights({"tok_emb.weight": table}, "int6"))["tok_emb.weight"]
    assert torch.equal(back, table)
    with pytest.raises(ValueError, match="int6 packs four values"):
        pack_weights({"tok_emb.weight": torch.ones(2, 6)}, "int6")


def test_save_is_atomic_and_keeps_the_model_card(tiny_model, tmp_path):
    enc = Encoder.load(tiny_model)
    out = enc.save(tmp_path / "m", card="# card\n")
    enc.save(out)  # saving over an existing bundle keeps its card
    assert (out / "README.md").read_text() == "# card\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no .tmp / .old left


@pytest.fixture()
def bundle_copy(tiny_model, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model, tmp_path / "copy"))


def test_tampered_weights_are_refused(bundle_copy):
    weights = bundle_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match config.json"):
        Encoder.load(bundle_copy)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "tokenizer.model").unlink(), "missing tokenizer.model"),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json is unreadable"),
        (lambda d: _edit_config(d, format="other-1"), "unknown model format 'other-1'"),
    ],
)
def test_broken_bundles_raise_model_load_error(bundle_copy, damage, message):
    damage(bundle_copy)
    with pytest.raises(ModelLoadError, match=message):
        Encoder.load(bundle_copy)


def _edit_config(root: Path, **changes) -> None:
    info = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**info, **changes}))


def test_missing_directory_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="is not an emsearch model"):
        Encoder.load(tmp_path / "nothing")


# --- Encoder.encode --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder(tiny_model) -> Encoder:
    return Encoder.load(tiny_model)


def test_encode_returns_unit_float32_rows_in_input_order(encoder):
    texts = SENTENCES[:30]
    xq = encoder.encode(texts, batch_tokens=64)  # many batches, reordered longest-first inside
    assert xq.shape == (30, encoder.dim) and xq.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(xq, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(xq, one_by_one, atol=1e-5)
    reverse = encoder.encode(texts[::-1], batch_tokens=100_000)
    np.testing.assert_allclose(reverse[::-1], xq, atol=1e-5)


def test_encode_handles_empty_strings_and_empty_input(encoder):
    xq = encoder.encode(["", "ka001 ka002", ""])
    assert np.isfinite(xq).all()
    np.testing.assert_array_equal(xq[0], xq[2])
    assert not np.allclose(xq[0], xq[1])
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_encode_refuses_a_bare_string(encoder):
    with pytest.raises(TypeError, match="list of sentences"):
        encoder.encode("ka001 ka002")


def test_a_one_megabyte_line_is_encoded_as_its_beginning(encoder):
    line = " ".join(f"ka{i % 120:03d}" for i in range(175_000))
    assert len(line.encode("utf-8")) > 1_000_000
    xq = encoder.encode(["ka001", line])
    np.testing.assert_allclose(xq[1], encoder.encode(["ka001", line[:2000]])[1], atol=1e-6)


def test_length_batches_cover_every_row_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=500).tolist()
    for budget in (60, 256, 4096):
        batches = list(length_batches(lengths, budget))
        assert sorted(np.concatenate(batches).tolist()) == list(range(500))
        widths = [max(lengths[i] for i in rows) for rows in batches]
        assert all(len(rows) * w <= budget for rows, w in zip(batches, widths))
        assert widths == sorted(widths, reverse=True)  # longest first: padding stays small
