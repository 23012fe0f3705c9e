"""`build-index`: resumable after SIGKILL, reuses what is finished, refuses what it must, and every bad input is a
one-line error that leaves nothing that looks finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import edit_manifest, synthetic_pairs
from emsearch.index.build import BuildConfig, BuildError, build_index, default_out
from emsearch.cli import main
from emsearch.index import Index, IndexOpenError
from emsearch.index.manifest import load as read_manifest


def write_corpus(path: Path, n: int, seed: int = 0) -> list[str]:
    eng, deu = synthetic_pairs(n, seed)
    texts = eng + deu
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(2 * n)], "lang": ["en"] * n + ["de"] * n,
                             "text": texts}), path)
    return texts


def config(corpus, out, model, **kw):
    return BuildConfig(input=str(corpus), out=str(out), model=str(model), id_column="id", **kw)


def cli(capsys, *args) -> tuple[int, str, str]:
    argv = sys.argv
    sys.argv = ["emsearch", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def assert_every_row_once(out: Path, ids: list[str], texts: list[str]) -> None:
    with Index.open(out) as index:
        assert index.ntotal == len(ids)
        records = index.records(range(index.ntotal))
        assert [r.id for r in records] == ids and [r.text for r in records] == texts
        assert sum(index.languages().values()) == len(ids)
        # no stored vector is missing from the FAISS side: visiting every list and re-scoring every candidate
        # (so that PQ's approximate ranking cannot hide a row), each finds itself (or an equal) first
        xq = index.embeddings(np.arange(index.ntotal))
        D, _ = index.search_vectors(xq, 1, nprobe=index.ntotal, rerank=index.ntotal)
        assert (D[:, 0] >= np.minimum((xq * xq).sum(1), 1.0) - 1e-4).all()  # scores are cosines: at most 1
        # and each row's vector is its own text's (centred on the corpus mean, as the index compares them), in every
        # shard
        rows = np.random.default_rng(0).choice(index.ntotal, 120, replace=False)
        stored = index.encoder.encode([texts[r] for r in rows]).astype(np.float16).astype(np.float32)
        expected = index.vectors_of(stored)
        np.testing.assert_allclose(xq[rows], expected, atol=2e-3)


def test_sigkill_then_rerun_gives_every_row_exactly_once(tiny_model, tmp_path):
    corpus = tmp_path / "big.parquet"
    texts = write_corpus(corpus, 3000)
    out = tmp_path / "idx"
    args = [sys.executable, "-m", "emsearch.cli", "build-index", corpus, "--out", out, "--model", tiny_model,
            "--id-column", "id", "--shard-size", "250"]
    proc = subprocess.Popen(list(map(str, args)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120

    def shards_recorded() -> int:
        try:
            manifest = read_manifest(out)
            return len(manifest.shards) if manifest else 0
        except ValueError:
            return 0

    while shards_recorded() == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = read_manifest(out)
    assert killed is not None and not killed.complete, "the build finished before it could be killed"
    with pytest.raises(IndexOpenError, match="unfinished build; rerun emsearch build-index"):
        Index.open(out)
    done_before = {s.file: (out / s.file).stat().st_mtime_ns for s in killed.shards}
    assert 1 <= len(done_before) < 24

    manifest = build_index(config(corpus, out, tiny_model, shard_size=250))
    assert manifest.complete and len(manifest.shards) == 24
    for file, mtime in done_before.items():  # finished shards were reused, not re-encoded
        assert (out / file).stat().st_mtime_ns == mtime
    assert_every_row_once(out, [f"r{i}" for i in range(len(texts))], texts)


def test_resume_redoes_only_damaged_shards_and_reindex_reuses_embeddings(tiny_model, tmp_path):
    corpus = tmp_path / "c.parquet"
    texts = write_corpus(corpus, 400)
    out = tmp_path / "idx"
    first = build_index(config(corpus, out, tiny_model, shard_size=200))
    assert first.index.params.kind == "flat" and len(first.shards) == 4
    mtimes = {s.file: (out / s.file).stat().st_mtime_ns for s in first.shards}
    # a crash mid-build: shard 2 lost, the manifest not yet complete
    (out / first.shards[2].file).unlink()
    edit_manifest(out, lambda m: m.update(complete=False))
    again = build_index(config(corpus, out, tiny_model, shard_size=200))
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in first.shards]  # deterministic
    changed = [f for f, t in mtimes.items() if (out / f).stat().st_mtime_ns != t]
    assert changed == [first.shards[2].file]
    # same input, other index options: only the FAISS stage is redone
    ivf = build_index(config(corpus, out, tiny_model, shard_size=200, index_factory="IVF8,PQ8x4"))
    assert ivf.index.params.kind == "ivf" and ivf.index.nprobe >= 1
    assert all((out / f).stat().st_mtime_ns == t for f, t in mtimes.items() if f not in changed)
    assert_every_row_once(out, [f"r{i}" for i in range(len(texts))], texts)
    # unchanged request: nothing to do
    assert build_index(config(corpus, out, tiny_model, shard_size=200, index_factory="IVF8,PQ8x4")) == ivf
    # without centring: the FAISS stage again, over the same shards
    assert ivf.index.centre is not None
    plain = build_index(replace(config(corpus, out, tiny_model, shard_size=200, index_factory="IVF8,PQ8x4"),
                                centre="none"))
    assert plain.index.centre is None and plain.index.nprobe >= 1
    assert all((out / f).stat().st_mtime_ns == t for f, t in mtimes.items() if f not in changed)
    assert_every_row_once(out, [f"r{i}" for i in range(len(texts))], texts)


def test_a_killed_build_loses_at_most_the_windows_in_flight(tiny_model, tmp_path, monkeypatch):
    import emsearch.index.encode_stage as encode_stage
    import emsearch.index.runners as runners

    corpus = tmp_path / "c.parquet"
    texts = write_corpus(corpus, 200)
    cfg = replace(config(corpus, tmp_path / "idx", tiny_model, shard_size=200), window_rows=50)
    clean = build_index(replace(cfg, out=str(tmp_path / "clean")))
    write_shard, encode_window = encode_stage.write_shard, runners.encode_window
    encoded: list[int] = []

    def killed_before_shard_1_is_written(root, index, *args):
        if index == 1:
            raise KeyboardInterrupt
        return write_shard(root, index, *args)

    def counting(encoder, window, batch_tokens):
        encoded.append(len(window))
        return encode_window(encoder, window, batch_tokens)

    monkeypatch.setattr(runners, "encode_window", counting)
    monkeypatch.setattr(encode_stage, "write_shard", killed_before_shard_1_is_written)
    with pytest.raises(KeyboardInterrupt):
        build_index(cfg)
    assert sum(encoded) == 400  # shard 0 written, shard 1's four windows encoded and saved, then the kill
    monkeypatch.setattr(encode_stage, "write_shard", write_shard)
    encoded.clear()
    again = build_index(cfg)
    assert sum(encoded) == 0  # shard 1 is assembled from the saved windows: nothing encoded twice
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in clean.shards]
    assert not (tmp_path / "idx" / encode_stage.WINDOWS_DIR).exists()
    assert_every_row_once(tmp_path / "idx", [f"r{i}" for i in range(len(texts))], texts)


def test_rerun_repairs_a_damaged_complete_index(tiny_model, tmp_path):
    corpus = tmp_path / "c.parquet"
    texts = write_corpus(corpus, 300)
    out = tmp_path / "idx"
    cfg = config(corpus, out, tiny_model, shard_size=200, index_factory="IVF8,PQ8x4", merge=True)
    built = build_index(cfg)
    (out / built.shards[1].file).unlink()
    (out / built.index.merged.data).unlink()
    with pytest.raises(IndexOpenError, match=r"00001.npy: missing \(and 1 more\); repair it with: emsearch "
                                             r"build-index .*c.parquet --out .*idx --model .* --shard-size 200 "
                                             r"--index-factory IVF8,PQ8x4 --merge$"):
        Index.open(out)
    repaired = build_index(cfg)
    assert repaired.complete and [s.sha256 for s in repaired.shards] == [s.sha256 for s in built.shards]
    assert (out / repaired.index.merged.data).is_file()
    assert_every_row_once(out, [f"r{i}" for i in range(len(texts))], texts)


def test_verify_finds_damage_and_a_rerun_repairs_it(tiny_model, tmp_path, capsys):
    corpus = tmp_path / "c.parquet"
    texts = write_corpus(corpus, 300)
    out = tmp_path / "idx"
    cfg = config(corpus, out, tiny_model, shard_size=200, index_factory="IVF8,PQ8x4")
    built = build_index(cfg)
    code, stdout, _ = cli(capsys, "verify", out)
    assert code == 0 and "whole" in stdout
    # Flipped bytes in a shard, a truncated store: found, named, and never a crash (a truncated LMDB file read
    # through its memory map would kill the process with SIGBUS).
    shard = out / built.shards[1].file
    raw = bytearray(shard.read_bytes())
    raw[-10:] = bytes(10)
    shard.write_bytes(bytes(raw))
    data = out / "store" / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(IndexOpenError, match=r"00001.npy: damaged .*\(and 1 more\); repair it with: emsearch"):
        Index.open(out)
    code, stdout, err = cli(capsys, "verify", out, "--json")
    verdict = json.loads(stdout)
    assert code == 1 and not verdict["whole"] and len(verdict["problems"]) == 2
    assert any(shard.name in p for p in verdict["problems"]) and any("data.mdb: damaged" in p
                                                                     for p in verdict["problems"])
    code, _, err = cli(capsys, "verify", out)
    assert code == 1 and "repair: emsearch build-index" in err
    # The hint works: the same build again re-encodes the shard, re-fills the store, rebuilds the FAISS index.
    repaired = build_index(cfg)
    assert [s.sha256 for s in repaired.shards] == [s.sha256 for s in built.shards]
    assert cli(capsys, "verify", out)[0] == 0
    assert_every_row_once(out, [f"r{i}" for i in range(len(texts))], texts)


def test_one_build_per_directory_at_a_time(tiny_model, tmp_path):
    import fcntl

    corpus = tmp_path / "c.parquet"
    write_corpus(corpus, 50)
    out = tmp_path / "idx"
    out.mkdir()
    with open(out / ".build.lock", "w") as held:  # what a running build holds
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        with pytest.raises(BuildError, match=r"another build is writing .*idx \(process 4242\)"):
            build_index(config(corpus, out, tiny_model))
    assert build_index(config(corpus, out, tiny_model)).complete  # released: the build runs
    assert not (out / ".build.lock").exists()


@pytest.mark.slow
def test_process_pool_workers_write_the_same_vectors(tiny_model, tmp_path):
    corpus = tmp_path / "c.parquet"
    write_corpus(corpus, 150)
    one = build_index(config(corpus, tmp_path / "one", tiny_model, shard_size=100, window_rows=64))
    two = build_index(config(corpus, tmp_path / "two", tiny_model, shard_size=100, window_rows=64, workers=2))
    for a, b in zip(one.shards, two.shards):
        x, y = (np.load(root / s.file) for root, s in ((tmp_path / "one", a), (tmp_path / "two", b)))
        np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=2e-3)


def test_output_directory_guards(tiny_model, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_corpus(a, 50, seed=1)
    write_corpus(b, 50, seed=2)
    out = tmp_path / "idx"
    build_index(config(a, out, tiny_model))
    with pytest.raises(BuildError, match=r"holds an index of .*a\.parquet .*--name or --out, or pass --overwrite"):
        build_index(config(b, out, tiny_model))
    replaced = build_index(config(b, out, tiny_model, overwrite=True))
    assert replaced.input.path.endswith("b.parquet") and replaced.complete
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(BuildError, match="exists and is not an emsearch index"):
        build_index(config(a, tmp_path / "junk", tiny_model, overwrite=True))
    assert (tmp_path / "junk" / "notes.txt").exists()
    # the same input file, changed: a finished index is protected, an unfinished build starts over
    write_corpus(b, 60, seed=3)
    with pytest.raises(BuildError, match=r"holds an index of an older version of this input.*bytes, mtime_ns differ"):
        build_index(config(b, out, tiny_model))
    edit_manifest(out, lambda m: m.update(complete=False))
    with pytest.raises(BuildError, match=r"unfinished build of an older .* shard_size differ\); rerun with the same"):
        build_index(config(b, out, tiny_model, shard_size=7))
    assert build_index(config(b, out, tiny_model)).counts.rows == 120
    assert default_out("data/news.de.parquet") == Path("indexes/news.de")
    assert default_out("x.parquet", "mine") == Path("indexes/mine")


def test_cli_builds_and_info_describes(tiny_model, tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"lang": "de" if i % 2 else "en", "text": f"ka{i:03d} ka001"}) + "\n"
                              for i in range(60)) + json.dumps({"lang": "de", "text": "  "}) + "\n", encoding="utf-8")
    code, _, err = cli(capsys, "build-index", corpus, "--out", tmp_path / "idx", "--model", tiny_model)
    assert code == 0 and "60 rows in 2 language(s)" in err
    code, out, _ = cli(capsys, "info", tmp_path / "idx", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["complete"] and facts["counts"]["skipped_empty"] == 1
    assert facts["counts"]["languages"] == {"deu": 30, "eng": 30} and facts["index"]["params"]["factory"] == "Flat"
    assert facts["index"]["centred"]
    assert facts["bytes"]["embeddings"] > 60 * 64 * 2 and facts["bytes_per_vector"] > 128
    code, out, _ = cli(capsys, "info", tmp_path / "idx")
    assert code == 0 and "deu 30, eng 30" in out and "bytes/vector" in out and "centred on the corpus mean" in out
    # Not a terminal: a hint is one line, never wrapped in the middle of what to type.
    code, _, err = cli(capsys, "build-index", corpus, "--out", tmp_path / "idx", "--model", tiny_model)
    assert code == 0 and f"{tmp_path / 'idx'} is up to date (pass --overwrite to rebuild it)" in err.splitlines()
    (tmp_path / "indexes").mkdir()
    (tmp_path / "idx").rename(tmp_path / "indexes" / "mine")
    monkeypatch.chdir(tmp_path)  # an index under ./indexes/ can be named
    code, out, _ = cli(capsys, "info", "mine", "--json")
    assert code == 0 and json.loads(out)["path"] == str(Path("indexes") / "mine")


def one_line_error(capsys, *args) -> str:
    code, _, err = cli(capsys, *args)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err
    assert lines[-1].startswith("error: ")
    return " ".join(lines)  # rich may wrap the one message on a narrow terminal


@pytest.mark.parametrize("name, content, extra, message", [
    ("empty.jsonl", b"", [], "the file is empty"),
    ("nocol.jsonl", b'{"lang": "de", "sentence": "x"}\n', [], "no column 'text' (columns: lang, sentence)"),
    ("bad.txt", b"ok\nbad \xc3\x28 byte\n", ["--lang", "de"], "bad.txt:2: not valid UTF-8"),
    ("plain.txt", b"hello\n", [], "give its language with --lang"),
    ("dups.tsv", b"id\tlang\ttext\na\tde\tone\nb\tde\ttwo\na\tde\tthree\n", ["--id-column", "id"],
     "duplicate id 'a' (rows 0 and 2)"),
    ("blank.jsonl", b'{"lang": "de", "text": null}\n', [], "no text to index"),
])
def test_bad_input_is_one_line_and_never_complete(tiny_model, tmp_path, capsys, name, content, extra, message):
    corpus = tmp_path / name
    corpus.write_bytes(content)
    out = tmp_path / "idx"
    err = one_line_error(capsys, "build-index", corpus, "--out", out, "--model", tiny_model, *extra)
    assert message in err
    manifest = read_manifest(out)
    assert manifest is None or not manifest.complete


def test_long_line_is_truncated_with_a_warning(tiny_model, tmp_path, capsys):
    corpus = tmp_path / "long.txt"
    corpus.write_text("ka001 ka002\n" + "ka003 " * 170_000 + "\nka004\n", encoding="utf-8")  # a 1 MB line
    code, _, err = cli(capsys, "build-index", corpus, "--out", tmp_path / "idx", "--model", tiny_model,
                       "--lang", "en")
    assert code == 0 and "1 texts were longer than the model's 32 tokens and were truncated" in err
    with Index.open(tmp_path / "idx") as index:
        assert index.ntotal == 3 and index.manifest.counts.truncated == 1
        assert len(index.records([1])[0].text) > 1_000_000  # the store keeps the full text


def test_flag_errors(tiny_model, tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a\n", encoding="utf-8")
    assert "give --name or --out, not both" in one_line_error(
        capsys, "build-index", corpus, "--name", "x", "--out", tmp_path / "o", "--lang", "en")
    assert "cannot read 'lots' as a memory size" in one_line_error(
        capsys, "build-index", corpus, "--out", tmp_path / "o", "--lang", "en", "--max-index-memory", "lots")
    assert "--workers must be at least 0, got -1" in one_line_error(
        capsys, "build-index", corpus, "--out", tmp_path / "o", "--lang", "en", "--model", tiny_model,
        "--workers", "-1")
    assert "--centre must be one of corpus, language, none, got 'middle'" in one_line_error(
        capsys, "build-index", corpus, "--out", tmp_path / "o", "--lang", "en", "--centre", "middle")
    assert "not a faiss factory string" in one_line_error(
        capsys, "build-index", corpus, "--out", tmp_path / "o", "--lang", "en", "--model", tiny_model,
        "--index-factory", "IVF4,Bogus")


def test_an_index_from_before_checksums_is_upgraded_without_re_encoding(tiny_model, tmp_path, capsys, monkeypatch):
    """No store checksum, no manifest checksum or copy: reported once, and the rerun records them (re-filling the
    store from the input) without encoding a row."""
    import emsearch.index.runners as runners

    corpus = tmp_path / "c.parquet"
    texts = write_corpus(corpus, 100)
    out = tmp_path / "idx"
    cfg = config(corpus, out, tiny_model, shard_size=100)
    build_index(cfg)
    old = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    del old["checksum"], old["store"]
    (out / "manifest.json").write_text(json.dumps(old), encoding="utf-8")
    (out / "manifest.json.bak").unlink()
    code, _, err = cli(capsys, "verify", out)
    assert code == 1 and "data.mdb: no checksum recorded" in err and "manifest.json.bak: missing" in err
    with pytest.raises(IndexOpenError, match="data.mdb: no checksum recorded .*repair it with: emsearch build-index"):
        Index.open(out)
    monkeypatch.setattr(runners, "encode_window", lambda *a: pytest.fail("a row was encoded again"))
    assert build_index(cfg).store is not None
    assert cli(capsys, "verify", out)[0] == 0
    monkeypatch.undo()
    assert_every_row_once(out, [f"r{i}" for i in range(len(texts))], texts)
