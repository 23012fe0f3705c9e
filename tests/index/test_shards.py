"""fp16 embedding shards: checksums catch damage, reads across shards return the right rows."""

from __future__ import annotations

import numpy as np
import pytest

from emsearch.index.shards import ShardedEmbeddings, load_shard, shard_is_valid, write_shard


def unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("mmap", [True, False])
def test_shards_round_trip_and_take_across_shards(tmp_path, mmap):
    x = unit(25, 8, 0)
    shards = [write_shard(tmp_path, 0, 0, x[:10]), write_shard(tmp_path, 1, 10, x[10:20], truncated=2),
              write_shard(tmp_path, 2, 20, x[20:])]
    assert [(s.start, s.stop, s.truncated) for s in shards] == [(0, 10, 0), (10, 20, 2), (20, 25, 0)]
    assert not list(tmp_path.rglob("*.tmp"))
    emb = ShardedEmbeddings(tmp_path, shards[::-1], 8, mmap=mmap)  # any order in, row order out
    rows = np.array([24, 3, 10, 3, 19, 0])
    np.testing.assert_array_equal(emb.take(rows), x[rows].astype(np.float16).astype(np.float32))
    blocks = list(emb.iter_blocks(block_rows=4))
    assert [b[0] for b in blocks] == [0, 4, 8, 10, 14, 18, 20, 24]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), emb.take(np.arange(25)))
    assert [b[0] for b in emb.iter_blocks(block_rows=4, shards=shards[1:2])] == [10, 14, 18]
    with pytest.raises(ValueError, match=r"row numbers must lie in \[0, 25\)"):
        emb.take(np.array([25]))


def test_checksum_detects_a_damaged_shard(tmp_path):
    shard = write_shard(tmp_path, 0, 0, unit(6, 4, 1))
    assert shard_is_valid(tmp_path, shard)
    path = tmp_path / shard.file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not shard_is_valid(tmp_path, shard)
    path.unlink()
    assert not shard_is_valid(tmp_path, shard)
    with pytest.raises(ValueError, match="unreadable embedding shard"):
        load_shard(tmp_path, shard, 4)


def test_wrong_shape_is_refused(tmp_path):
    shard = write_shard(tmp_path, 0, 0, unit(6, 4, 2))
    with pytest.raises(ValueError, match=r"expected float16\(6, 8\)"):
        load_shard(tmp_path, shard, 8)
