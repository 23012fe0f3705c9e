"""Shared fixtures: a synthetic parallel corpus and a tiny EMS model trained on it once per session.

The synthetic corpus has two made-up languages that map words one-to-one, with the word order of the second
reversed: a model only retrieves the right translation if training taught it the word correspondences.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emsearch.config import PRESETS, TokenizerConfig, TrainConfig, from_dict
from emsearch.index.manifest import Manifest, save

WORDS = 120


def synthetic_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n sentence pairs: 'English' side of pseudo-words, 'German' side = word-mapped, order reversed."""
    rng = np.random.default_rng(seed)
    src_words = [f"ka{i:03d}" for i in range(WORDS)]
    tgt_words = [f"{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}lo" for i in range(WORDS)]
    eng, other = [], []
    for _ in range(n):
        idx = rng.choice(WORDS, size=rng.integers(3, 8), replace=False)
        eng.append(" ".join(src_words[i] for i in idx))
        other.append(" ".join(tgt_words[i] for i in idx[::-1]))
    return eng, other


def write_pairs(path: Path, n: int, seed: int = 0, lang: str = "deu") -> Path:
    eng, other = synthetic_pairs(n, seed)
    pq.write_table(pa.table({"lang": [lang] * n, "text": other, "eng": eng}), path)
    return path


def tiny_config(tmp: Path, data: Path, steps: int = 150, **overrides) -> TrainConfig:
    cfg = TrainConfig(
        data=(str(data),), out=str(tmp / "run"), model=PRESETS["tiny"],
        tokenizer=TokenizerConfig(vocab_size=400, sample_sentences=4000, model_type="bpe", alpha=0.3,
                                  character_coverage=0.9995),
        steps=steps, batch_tokens=1024, batch_pairs=0, lr=2e-3, warmup=20, checkpoint_every=50, log_every=10,
        temperature=0.1, margin=0.0, xtr_weight=1.0, xtr_pairs=0, contrastive_weight=2.0, alpha=0.3, threads=1,
    )
    return TrainConfig(**{**cfg.__dict__, **overrides})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Path of a tiny EMS bundle trained for a few seconds on the synthetic corpus."""
    from emsearch.train import train

    tmp = tmp_path_factory.mktemp("tiny_model")
    data = write_pairs(tmp / "pairs.parquet", 3000)
    return train(tiny_config(tmp, data, steps=250), progress=False)  # top-1 on unseen pairs ~0.95 (150: ~0.8)


def edit_manifest(root: Path, edit: Callable[[dict], None]) -> None:
    """Change an index's manifest as a build (of this or an older version) could have written it: `edit` changes
    the JSON in place, and both copies are saved with their checksum anew."""
    data = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    data.pop("checksum", None)
    edit(data)
    save(root, from_dict(Manifest, data))


def run_cli(args: list, capsys, monkeypatch) -> tuple[int, str, str]:
    """Run `emsearch ARGS...` in-process through `main()`; returns (exit code, stdout, stderr)."""
    from emsearch.cli import main

    monkeypatch.setattr(sys, "argv", ["emsearch", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def serving(index_path: Path, limits):
    """The HTTP service of an index in a thread, on a free local port: yields (port, index)."""
    from emsearch.index import Index
    from emsearch.server import SearchService, make_server

    with Index.open(index_path) as index:
        httpd = make_server(SearchService(index, limits), "127.0.0.1", 0, quiet=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield httpd.server_address[1], index
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of two CPUs for the tests of one module (they skip where Ray is not installed)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
