"""Opening an index hashes each file once: later opens trust the stamp while the file's size, inode and times are
those it recorded; a file replaced or written since is hashed again, and damage is still refused."""

from __future__ import annotations

import json
import os

import pytest

from emsearch.index import verify
from emsearch.index.manifest import load_index
from emsearch.index.reader import Index, IndexOpenError
from emsearch.index.verify import STAMP, check_index, recorded_files
from toy_index import build_toy_index


@pytest.fixture()
def index(tiny_model, tmp_path, monkeypatch):
    path = build_toy_index(tmp_path, tiny_model, n=40, n_noise=10).path
    monkeypatch.setattr(verify, "RACY_SECONDS", 0.0)  # the files were written just now; the racy window is tested
    return path


@pytest.fixture()
def hashes(monkeypatch):
    """The files hashed since the fixture was made."""
    seen: list[str] = []
    real = verify.file_sha256

    def counting(path):
        seen.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(verify, "file_sha256", counting)
    return seen


def data_files(path) -> list[str]:
    return [f for f, _ in recorded_files(load_index(path, complete=True))]


def test_a_second_open_hashes_nothing(index, tiny_model, hashes):
    with Index.open(index, model=tiny_model):
        pass
    assert len(hashes) == len(data_files(index)) >= 3
    assert set(json.loads((index / STAMP).read_text())["files"]) == set(data_files(index))
    hashes.clear()
    with Index.open(index, model=tiny_model) as opened:
        assert opened.search(["x"], k=1)  # still answers
    assert hashes == []


def test_a_file_replaced_since_its_stamp_is_hashed_and_refused(index, tiny_model, hashes):
    with Index.open(index, model=tiny_model):
        pass
    shard = index / next(f for f in data_files(index) if f.endswith(".npy"))
    damaged = bytearray(shard.read_bytes())
    damaged[-1] ^= 0xFF
    tmp = shard.with_name("copy.tmp")
    tmp.write_bytes(bytes(damaged))
    os.replace(tmp, shard)  # same size, new inode: what a copy over it does
    hashes.clear()
    with pytest.raises(IndexOpenError, match="damaged"):
        Index.open(index, model=tiny_model)
    assert hashes == [shard.name]


def test_verify_always_hashes_everything(index, tiny_model, hashes):
    with Index.open(index, model=tiny_model):
        pass
    hashes.clear()
    assert check_index(index).verdict.whole
    assert len(hashes) == len(data_files(index))


def test_files_written_in_the_racy_window_are_not_stamped(index, tiny_model, hashes, monkeypatch):
    monkeypatch.setattr(verify, "RACY_SECONDS", 2.0)
    first = index / data_files(index)[0]
    os.utime(first)  # written now: a write in the same clock tick could leave its times as they are
    with Index.open(index, model=tiny_model):
        pass
    stamped = json.loads((index / STAMP).read_text())["files"]
    assert data_files(index)[0] not in stamped
    hashes.clear()
    with Index.open(index, model=tiny_model):
        pass
    assert first.name in hashes


def test_an_unreadable_stamp_means_hashing(index, tiny_model, hashes):
    (index / STAMP).write_text("{not json")
    with Index.open(index, model=tiny_model):
        pass
    assert len(hashes) == len(data_files(index))
