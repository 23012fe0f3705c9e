"""The typed manifest: it round-trips through JSON, refuses corrupt, foreign and mistyped files, and the index
path resolver finds an index by path, by name under indexes/, or as the only one there."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from emsearch.index.choice import choose_index
from emsearch.index.manifest import (BuildRecord, CalibrationPoint, Counts, IndexRecord, InputRecord, Manifest,
                                     ManifestError, ModelRecord, Requested, load, read, resolve_index, save)
from emsearch.index.shards import write_shard


def manifest(tmp_path) -> Manifest:
    shard = write_shard(tmp_path, 0, 0, np.eye(3, 4, dtype=np.float32))
    params = choose_index(200_000, 64, 4 << 30, None)
    return Manifest(
        model=ModelRecord("m1", None, 4, 32), input=InputRecord("/c.parquet", "parquet", 10, 1),
        build=BuildRecord("text", "lang", None, None, 100), counts=Counts(3, languages={"deu": 3}),
        emsearch="0.1.0", created="2026-01-01T00:00:00+00:00", shards=(shard,),
        index=IndexRecord(Requested(None, 4 << 30, False), params, nprobe=4, rerank=100,
                          calibration=(CalibrationPoint(4, 100, 0.96),), recall_at_10=0.96))


def test_round_trip(tmp_path):
    assert load(tmp_path) is None
    m = manifest(tmp_path)
    save(tmp_path, m)
    assert load(tmp_path) == m
    done = replace(m, complete=True)
    save(tmp_path, done)
    assert load(tmp_path).complete and not list(tmp_path.glob("*.tmp"))


def test_a_damaged_copy_is_read_from_the_other(tmp_path):
    m = manifest(tmp_path)
    save(tmp_path, m)
    main, copy = tmp_path / "manifest.json", tmp_path / "manifest.json.bak"
    assert main.read_bytes() == copy.read_bytes()
    # a changed digit still parses: the checksum catches it, and the copy answers
    main.write_text(main.read_text(encoding="utf-8").replace('"rows": 3', '"rows": 4'), encoding="utf-8")
    with pytest.raises(ManifestError, match="manifest.json is damaged .*rerun emsearch build-index"):
        read(main)
    assert load(tmp_path) == m
    main.unlink()
    assert load(tmp_path) == m
    copy.write_bytes(copy.read_bytes()[:50])
    with pytest.raises(ManifestError, match="manifest.json.bak is corrupt"):
        load(tmp_path)


def test_corrupt_foreign_and_mistyped_manifests_are_refused(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{ half", encoding="utf-8")
    with pytest.raises(ManifestError, match="manifest.json is corrupt"):
        load(tmp_path)
    path.write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(ManifestError, match="not an emsearch index manifest"):
        load(tmp_path)
    data = manifest(tmp_path).to_json()
    data["counts"]["rows"] = "three"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError, match=r"malformed .*Manifest.counts.rows: expected int"):
        load(tmp_path)
    del data["model"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError, match="malformed"):
        load(tmp_path)


def test_resolve_index_by_path_name_or_the_only_one(tmp_path):
    home = tmp_path / "indexes"
    with pytest.raises(ManifestError, match="no index under"):
        resolve_index(None, home)
    (home / "news").mkdir(parents=True)
    (home / "news" / "manifest.json").write_text("{}")
    (home / "not-an-index").mkdir()
    assert resolve_index(None, home) == home / "news"
    assert resolve_index("news", home) == home / "news"
    assert resolve_index(tmp_path / "x", home) == tmp_path / "x"
    (home / "other").mkdir()
    (home / "other" / "manifest.json").write_text("{}")
    with pytest.raises(ManifestError, match="2 indexes under .* choose one with --index"):
        resolve_index(None, home)
