"""`mine --ray` on a local Ray instance writes the same pairs as the local run."""

from __future__ import annotations

import json

import faiss
import pytest

from conftest import run_cli
from toy_index import build_toy_index

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


def test_ray_mining_matches_local_mining(local_ray, tiny_model, tmp_path, capsys, monkeypatch):
    toy = build_toy_index(tmp_path, tiny_model, index_factory="IVF4,Flat")  # the approximate path, several shards
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(toy.path), "--chunk", "40", "--format", "tsv"]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # as in each actor: the same floats, bit for bit
    try:
        code, _, err = run_cli(base + ["-o", str(tmp_path / "local.tsv")], capsys, monkeypatch)
    finally:
        faiss.omp_set_num_threads(threads)
    assert code == 0, err
    code, _, err = run_cli(base + ["-o", str(tmp_path / "ray.tsv"), "--ray", "--workers", "2"], capsys, monkeypatch)
    assert code == 0, err
    local, remote = (tmp_path / "local.tsv").read_text(), (tmp_path / "ray.tsv").read_text()
    assert local == remote and len(local.splitlines()) > 50
    a, b = (json.loads((tmp_path / f"{name}.tsv.json").read_text()) for name in ("local", "ray"))
    assert {**a, "output": "", "seconds": 0} == {**b, "output": "", "seconds": 0}


def test_ray_mining_by_group_matches_local_mining(local_ray, tiny_model, tmp_path, capsys, monkeypatch):
    """An index of several FAISS groups is mined by a worker per group (none holds the whole index): the driver
    merges their candidates and re-scores them, and writes what the local run writes."""
    from emsearch.index import choice, reader
    from emsearch.search import mine_ray

    monkeypatch.setattr(choice, "GROUP_ROWS", 128)  # two shards of 64 rows per FAISS file
    toy = build_toy_index(tmp_path, tiny_model, index_factory="IVF4,Flat")
    monkeypatch.setattr(reader, "EXACT_SUBSET_ROWS", 0)  # each language through FAISS, as a large one goes
    searchers = []
    monkeypatch.setattr(mine_ray.RaySearcher, "_by_group",
                        lambda self, *a, real=mine_ray.RaySearcher._by_group: searchers.append(a[0]) or real(self, *a))
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(toy.path), "--chunk", "40", "--format", "tsv"]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        code, _, err = run_cli(base + ["-o", str(tmp_path / "local.tsv")], capsys, monkeypatch)
    finally:
        faiss.omp_set_num_threads(threads)
    assert code == 0, err
    code, _, err = run_cli(base + ["-o", str(tmp_path / "ray.tsv"), "--ray", "--workers", "2"], capsys, monkeypatch)
    assert code == 0, err
    assert searchers == ["fwd", "bwd"]  # both directions went by group
    local, remote = (tmp_path / "local.tsv").read_text(), (tmp_path / "ray.tsv").read_text()
    assert local == remote and len(local.splitlines()) > 50
