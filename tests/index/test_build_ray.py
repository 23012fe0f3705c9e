"""`build-index --ray` on a local Ray instance writes the same index as the local path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emsearch.index.build import BuildConfig, build_index
from emsearch.index import Index
from test_build import write_corpus

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


@pytest.mark.slow
def test_ray_build_matches_local_build(local_ray, tiny_model, tmp_path):
    corpus = tmp_path / "c.parquet"
    write_corpus(corpus, 300)
    common = dict(input=str(corpus), model=str(tiny_model), id_column="id", shard_size=200, window_rows=100,
                  index_factory="IVF8,PQ8x4")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each actor: the same floats, bit for bit
    try:
        local = build_index(BuildConfig(out=str(tmp_path / "local"), **common))
    finally:
        torch.set_num_threads(threads)
    remote = build_index(BuildConfig(out=str(tmp_path / "ray"), ray=True, workers=2, **common))
    assert remote.complete and remote.counts == local.counts
    assert [(s.start, s.stop) for s in remote.shards] == [(s.start, s.stop) for s in local.shards]
    with Index.open(tmp_path / "local") as a, Index.open(tmp_path / "ray") as b:
        rows = np.arange(a.ntotal)
        assert a.records(rows) == b.records(rows)
        np.testing.assert_array_equal(a.embeddings(rows), b.embeddings(rows))
        assert a.manifest.index.nprobe == b.manifest.index.nprobe
        xq = a.embeddings(rows[:50])
        for x, y in zip(a.search_vectors(xq, 5), b.search_vectors(xq, 5)):
            np.testing.assert_array_equal(x, y)
