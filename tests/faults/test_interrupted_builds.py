"""A build that fails at any of its writes (a full disk, an I/O error) or is killed at any stage: a failed write
is one `error:` line naming the file and what to do, never a traceback; and the same command run again finishes an
index that `verify` calls whole and that answers exactly like a clean build, encoding no saved window again
(only the windows in flight when it failed)."""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

import pytest

from faulty import Faults, Killed, answers, count_encoded, one_thread  # noqa: F401
from conftest import run_cli
from toy_index import build_toy_index
from emsearch.atomic import WriteError
from emsearch.encoder import Encoder
from emsearch.index.build import BuildConfig, build_index
from emsearch.index.manifest import load
from emsearch.index.verify import verify_index

OPTIONS = {"shard_size": 50, "index_factory": "IVF4,PQ8x4", "merge": True}  # every kind of write: the merge too


@pytest.fixture(scope="module")
def clean(tiny_model, tmp_path_factory):
    """The clean build, its answers, and its writes in order (by name)."""
    toy = build_toy_index(tmp_path_factory.mktemp("clean"), tiny_model, n=40, n_noise=10, **OPTIONS)
    queries = toy.deu[:3] + toy.eng[:2]
    encoder = Encoder.load(tiny_model)
    with pytest.MonkeyPatch.context() as monkeypatch:
        faults = Faults(monkeypatch)
        build_index(config(toy, tiny_model, toy.path.parent / "counted"), encoder=encoder)
    return toy, queries, answers(toy.path, queries, encoder), faults.log, encoder


def config(toy, model, out) -> BuildConfig:
    return BuildConfig(input=str(toy.path.parent / "corpus.parquet"), out=str(out), model=str(model),
                       id_column="id", **OPTIONS)


def stages(writes: list[str]) -> list[int]:
    """The first write of each kind (a manifest, a store transaction, a window, a shard, each FAISS file, ...)."""
    kinds = [re.sub(r"\d", "N", what) for what in writes]
    return [kinds.index(kind) for kind in dict.fromkeys(kinds)]


@pytest.mark.slow
@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EIO, Killed], ids=["ENOSPC", "EIO", "killed"])
def test_a_fault_at_every_write_then_a_rerun(clean, tiny_model, fault, tmp_path, capsys, monkeypatch):
    """A full disk and an I/O error at every write; a kill at the first write of each kind (each stage)."""
    toy, queries, expected, writes, encoder = clean
    assert len(writes) > 20  # windows, shards, manifests, store transactions, FAISS files, the merge
    cfg = config(toy, tiny_model, tmp_path / "idx")
    rows = 2 * (40 + 10)
    for at in stages(writes) if fault is Killed else range(len(writes)):
        shutil.rmtree(cfg.out, ignore_errors=True)
        with monkeypatch.context() as m:
            encoded = count_encoded(m)
            faults = Faults(m, at, fault)
            with pytest.raises(Killed if fault is Killed else WriteError) as failed:
                build_index(cfg, encoder=encoder)
            assert faults.fired, at
            if fault is not Killed:
                message = str(failed.value)
                assert "\n" not in message and message.startswith(f"cannot write {cfg.out}/"), message
                assert message.endswith("then rerun the same command (what was finished is kept)"), message
                assert ("free some space" in message) == (fault == errno.ENOSPC), message
            rebuilt = build_index(cfg, encoder=encoder)
        assert rebuilt.complete, faults.fired
        assert sum(encoded) <= rows + 2 * 50, faults.fired  # both runs: every row once, and the windows in flight
        # (at most two of 50 rows: the in-process runner's 2·parallelism) again
        assert verify_index(tmp_path / "idx", load(tmp_path / "idx")).whole, faults.fired
        assert answers(tmp_path / "idx", queries, encoder) == expected, faults.fired


@pytest.mark.parametrize("point", ["store/data.mdb", "faiss/trained.index", "embeddings/00000.npy"])
def test_the_cli_names_the_file_in_one_line(clean, tiny_model, point, tmp_path, capsys, monkeypatch):
    """The `error:` line, after the stages the build finished: no spinner or bar of the failed one above it."""
    toy, *_ = clean
    out = tmp_path / "idx"
    command = ["build-index", toy.path.parent / "corpus.parquet", "--out", out, "--model", tiny_model,
               "--id-column", "id", "--shard-size", 50, "--index-factory", "IVF4,PQ8x4"]
    with monkeypatch.context() as m:
        faults = Faults(m)  # count the writes to find the first of `point`
        assert run_cli(command, capsys, m)[0] == 0
    shutil.rmtree(out)
    names = iter(faults.log)
    at = next(i for i, what in enumerate(names) if what.endswith(Path(point).name + ".tmp") or what == point)
    with monkeypatch.context() as m:
        Faults(m, at)
        code, _, err = run_cli(command, capsys, m)
    *before, line = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert all(done.startswith("✓ ") or " 100/100 " in done for done in before), err  # finished stages only
    assert line.startswith(f"error: cannot write {out / point} (") and line.endswith(
        "No space left on device); free some space on its disk, then rerun the same command (what was finished is "
        "kept)"), line
