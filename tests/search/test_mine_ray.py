"""`mine --ray` on a local Ray instance writes the same pairs as the local run: with whole-index actors, and with a
worker per FAISS group."""

from __future__ import annotations

import json

import faiss
import pytest

from conftest import run_cli
from toy_index import build_toy_index

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


def mine_locally_and_on_ray(index, tmp_path, capsys, monkeypatch) -> tuple[dict, dict]:
    """{name: (pairs file text, OUTPUT.json)} of the local run and the Ray run of one mining command."""
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(index), "--chunk", "40", "--format", "tsv"]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # as in each actor: the same floats, bit for bit
    try:
        code, _, err = run_cli(base + ["-o", str(tmp_path / "local.tsv")], capsys, monkeypatch)
    finally:
        faiss.omp_set_num_threads(threads)
    assert code == 0, err
    code, _, err = run_cli(base + ["-o", str(tmp_path / "ray.tsv"), "--ray", "--workers", "2"], capsys, monkeypatch)
    assert code == 0, err
    local, remote = ((tmp_path / f"{name}.tsv").read_text() for name in ("local", "ray"))
    a, b = (json.loads((tmp_path / f"{name}.tsv.json").read_text()) for name in ("local", "ray"))
    assert local == remote and len(local.splitlines()) > 50
    return a, b


def test_ray_mining_matches_local_mining(local_ray, tiny_model, tmp_path, capsys, monkeypatch):
    toy = build_toy_index(tmp_path, tiny_model, index_factory="IVF4,Flat")  # several shards
    a, b = mine_locally_and_on_ray(toy.path, tmp_path, capsys, monkeypatch)
    assert {**a, "output": "", "seconds": 0} == {**b, "output": "", "seconds": 0}


def test_ray_mining_by_group_matches_local_mining(local_ray, tiny_model, tmp_path, capsys, monkeypatch):
    """An index of several FAISS groups is mined by a worker per group (none holds the whole index): the driver
    merges their candidates and re-scores them, and writes what the local run writes."""
    from emsearch.index import choice, reader
    from emsearch.search import mine_ray

    monkeypatch.setattr(choice, "GROUP_ROWS", 128)  # two shards of 64 rows per FAISS file
    toy = build_toy_index(tmp_path, tiny_model, index_factory="IVF4,Flat")
    monkeypatch.setattr(reader, "EXACT_SUBSET_ROWS", 0)  # each language through FAISS, as a large one goes
    searched = []
    monkeypatch.setattr(mine_ray.RaySearcher, "_by_group",
                        lambda self, *a, real=mine_ray.RaySearcher._by_group: searched.append(a[0]) or real(self, *a))
    mine_locally_and_on_ray(toy.path, tmp_path, capsys, monkeypatch)
    assert searched == ["fwd", "bwd"]  # both directions went by group
