"""Benchmark fixtures: real emsearch indexes over synthetic vectors, and a 256-dimensional model to open them with.

Encoding a million sentences on a CPU takes hours, so the latency and mining-throughput benchmarks index
synthetic vectors instead: `build_vector_index` runs the real builder (`emsearch.index.build.build_index`: LMDB store,
fp16 shards, index choice, training, nprobe calibration, manifest) with the encoding step answered from a given
matrix. Everything a query touches is then the product's own code and files.

Synthetic vectors (`mixture`): unit vectors around random centres, so that, as with sentence embeddings,
neighbourhoods are topical (cosine to the nearest neighbours ~0.5–0.8) rather than uniformly random — on
uniform random vectors in 256 dimensions every point is nearly equidistant and no ANN index reaches useful recall.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def centres(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n random unit vectors: the topics of a `mixture`."""
    return unit(np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32))


def mixture(n: int, centres: np.ndarray, seed: int, spread: float = 0.055) -> np.ndarray:
    """(n, dim) float32 unit vectors, each a random centre plus Gaussian noise of `spread` per coordinate.

    With dim 256 and spread 0.055 a vector has cosine ~0.75 to its centre and ~0.56 to the others around it.
    """
    rng = np.random.default_rng(seed)
    dim = centres.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 1 << 16):
        hi = min(n, lo + (1 << 16))
        pick = rng.integers(0, len(centres), size=hi - lo)
        out[lo:hi] = unit(centres[pick] + spread * rng.standard_normal((hi - lo, dim), dtype=np.float32))
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def model_for(path: str | None, dim: int = 256) -> str:
    """`path`, else the default model if its dimension is `dim`, else a stand-in: an untrained `cpu-small`-shaped
    bundle of dimension `dim`. The stand-in gives an index its model identity and measures encoding cost; its
    vectors mean nothing.
    """
    import json

    from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder

    if path is not None:
        return path
    config = DEFAULT_MODEL_DIR / "config.json"
    if config.is_file() and json.loads(config.read_text(encoding="utf-8"))["model"]["dim"] == dim:
        return str(DEFAULT_MODEL_DIR)
    out = Path(tempfile.gettempdir()) / f"emsearch-bench-model-{dim}"
    if (out / "config.json").is_file():
        return str(out)
    import torch

    from dataclasses import replace

    from emsearch.config import PRESETS, TokenizerConfig
    from emsearch.model import EMSEncoder
    from emsearch.tokenizer import Tokenizer, train_tokenizer

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    text = [" ".join(rng.choice(words, size=12)) for _ in range(4000)]
    spm = train_tokenizer({"xxx": text}, TokenizerConfig(vocab_size=2000, sample_sentences=4000, model_type="bpe"),
                          out.with_name(out.name + ".spm"))
    cfg = replace(PRESETS["cpu-small"], vocab_size=2000, dim=dim)
    torch.manual_seed(0)
    encoder = Encoder(EMSEncoder(cfg), Tokenizer(spm, cfg.max_len), {"note": "untrained benchmark stand-in"}, "cpu")
    return str(encoder.save(out))


def vectors_as_encoder(vectors: np.ndarray, model: str):
    """The model at `model`, answering row r's vector from `vectors` for the text f"r{r}" instead of encoding:
    handed to `build_index(..., encoder=)`, which then encodes in-process with it."""
    from emsearch.encoder import Encoder

    class Given(Encoder):
        def encode(self, texts, batch_tokens: int = 16384, progress: bool = False) -> np.ndarray:
            return vectors[[int(t[1:]) for t in texts]]

    base = Encoder.load(model, device="cpu")
    return Given(base.model, base.tokenizer, base.info, "cpu")


def build_vector_index(vectors: np.ndarray, langs: list[str] | np.ndarray, out: Path, model: str, *,
                       index_factory: str | None = None, shard_size: int = 100_000, console=None) -> Path:
    """A complete emsearch index at `out` whose row r has vector vectors[r], language langs[r], id f"r{r}"."""
    from emsearch.index.build import BuildConfig, build_index

    n = len(vectors)
    corpus = out.with_name(out.name + ".corpus.parquet")
    if not corpus.is_file():
        texts = [f"r{i}" for i in range(n)]
        pq.write_table(pa.table({"id": texts, "lang": list(langs), "text": texts}), corpus)
    build_index(BuildConfig(input=str(corpus), out=str(out), model=model, id_column="id", shard_size=shard_size,
                            window_rows=65536, index_factory=index_factory),
                console=console, encoder=vectors_as_encoder(vectors, model))
    return out
