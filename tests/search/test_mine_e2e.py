"""End to end: encode → index → mine recovers the true pairs; margins see the whole target side; output files,
resumption, the threshold (the model bundle's by default, given, or from the corpus) and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import edit_manifest, synthetic_pairs
from conftest import run_cli
from toy_index import build_toy_index
from emsearch.encoder import Encoder
from emsearch.index import Index
from emsearch.search.mine import MineConfig, mine_indexes, mine_to_file
from emsearch.index.exact import exact_knn
from emsearch.search.margin import mine

DUP_ENG, DUP_DEU = (s[0] for s in synthetic_pairs(1, seed=99))
# one German sentence twice and its translation once: fwd mining pairs both copies with it
EXTRA = (("de-dup-a", "deu", DUP_DEU), ("de-dup-b", "deu", DUP_DEU), ("en-dup", "eng", DUP_ENG))


@pytest.fixture(scope="module")
def toy(tiny_model, tmp_path_factory):
    return build_toy_index(tmp_path_factory.mktemp("mine_index"), tiny_model, extra=EXTRA)


@pytest.fixture
def index(toy):  # per test: LMDB allows one open environment per path and process, and the CLI opens its own
    with Index.open(toy.path) as idx:
        yield idx


def true_pairs(toy) -> set[tuple[str, str]]:
    return {(f"de-{i}", f"en-{i}") for i in range(len(toy.deu))} | {("de-dup-a", "en-dup"), ("de-dup-b", "en-dup")}


def test_mining_recovers_the_true_pairs(toy, index, tmp_path):
    result = mine_to_file(index, index, MineConfig("de", "en"), tmp_path / "pairs.parquet")
    table = pq.read_table(result.output)
    assert table.column_names == ["src_id", "tgt_id", "score", "src_text", "tgt_text"]
    rows = table.to_pylist()
    assert result.written == len(rows) and result.src_sentences == 150 + 60 + 2
    mined = [(r["src_id"], r["tgt_id"]) for r in rows]
    assert len(set(mined)) == len(mined)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    gold = true_pairs(toy)
    # chance would be ~1/210 per pair; the tiny model gets ~75% of the pairs right, at any cut-off
    assert sum(p in gold for p in mined[:100]) > 60
    assert sum(p in gold for p in mined) > 0.6 * len(toy.deu)
    for r in rows[:20]:
        if (r["src_id"], r["tgt_id"]) in gold and r["src_id"].startswith("de-") and r["src_id"][3:].isdigit():
            i = int(r["src_id"][3:])
            assert (r["src_text"], r["tgt_text"]) == (toy.deu[i], toy.eng[i])
    meta = json.loads(table.schema.metadata[b"emsearch"])
    assert meta["config"]["src"] == "deu" and meta["model_id"] == index.model_id
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.partial"))


def test_margin_neighbourhoods_span_every_shard(toy, index):
    """Mining through the sharded index equals mining with exact kNN over all sentences of each language."""
    assert len(index.manifest.shards) > 3
    x_rows, y_rows = index.rows_of_lang("deu"), index.rows_of_lang("eng")
    x, y = index.embeddings(x_rows), index.embeddings(y_rows)
    for mode in ("max", "intersect"):
        expected = mine(*exact_knn(x, y, 4), *exact_knn(y, x, 4), mode=mode)
        pairs, nx, ny, _ = mine_indexes(index, index, MineConfig("deu", "eng", mode=mode, chunk=50))
        assert (nx, ny) == (len(x_rows), len(y_rows))
        assert np.array_equal(pairs.src, x_rows[expected.src]) and np.array_equal(pairs.tgt, y_rows[expected.tgt])
        assert np.allclose(pairs.score, expected.score, atol=1e-5)


def test_ivf_index_with_language_selector(tiny_model, tmp_path, monkeypatch):
    """The approximate path (IVF over all shards, restricted to a language by a FAISS selector) with every list
    probed finds the same neighbours as exact search."""
    import emsearch.index.reader as index_module
    from emsearch.index.build import BuildConfig, build_index

    toy = build_toy_index(tmp_path, tiny_model)
    build_index(BuildConfig(input=str(tmp_path / "corpus.parquet"), out=str(tmp_path / "ivf"), model=str(tiny_model),
                            id_column="id", shard_size=64, index_factory="IVF4,Flat"))
    monkeypatch.setattr(index_module, "EXACT_SUBSET_ROWS", 0)
    with Index.open(tmp_path / "ivf") as ivf, Index.open(toy.path) as flat:
        assert ivf.manifest.index.params.kind == "ivf"
        got, _, _, _ = mine_indexes(ivf, ivf, MineConfig("de", "en", nprobe=4))
        want, _, _, _ = mine_indexes(flat, flat, MineConfig("de", "en"))
    assert np.array_equal(got.src, want.src) and np.array_equal(got.tgt, want.tgt)


def test_duplicate_text_pairs_are_written_once(toy, index, tmp_path):
    out = tmp_path / "pairs.tsv"
    result = mine_to_file(index, index, MineConfig("de", "en", mode="fwd"), out, "tsv")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "src_id\ttgt_id\tscore\tsrc_text\ttgt_text"
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 5 for r in rows) and len(rows) == result.written
    dup_rows = [r for r in rows if r[3] == DUP_DEU and r[4] == DUP_ENG]
    assert len(dup_rows) == 1 and result.duplicates >= 1
    texts = [(r[3], r[4]) for r in rows]
    assert len(set(texts)) == len(texts)


def test_interrupted_run_resumes_from_cached_chunks(index, tmp_path, monkeypatch):
    work = tmp_path / "work"
    cfg = MineConfig("de", "en", chunk=40)
    first, _, _, _ = mine_indexes(index, index, cfg, work_dir=work)
    assert len(list(work.glob("fwd-*.I.npy"))) == 6 and (work / "job.json").is_file()

    def no_search(*args, **kwargs):
        raise AssertionError("searched although every chunk was cached")

    with monkeypatch.context() as m:
        m.setattr(index, "search_vectors", no_search)
        again, _, _, _ = mine_indexes(index, index, cfg, work_dir=work)
    assert np.array_equal(first.src, again.src) and np.array_equal(first.score, again.score)
    # another job (k differs) must not reuse the cache
    (work / "fwd-000000.I.npy").unlink()  # a chunk lost in a crash is simply redone
    other, _, _, _ = mine_indexes(index, index, MineConfig("de", "en", chunk=40, k=3), work_dir=work)
    assert json.loads((work / "job.json").read_text())["neighbours"] == 4  # k + 1: the extra one for the negatives
    assert np.load(work / "fwd-000000.I.npy").shape[1] == 4 and len(other) > 0


def test_cli_threshold_model_auto_and_given(toy, tiny_model, tmp_path, capsys, monkeypatch):
    bundle = tmp_path / "model"
    shutil.copytree(tiny_model, bundle)
    info = json.loads((bundle / "config.json").read_text())
    info["mining_threshold"] = 1e9  # nothing can score this high: where it is applied, nothing is kept
    (bundle / "config.json").write_text(json.dumps(info))
    out = tmp_path / "pairs.tsv"
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(toy.path), "--model", str(bundle), "-o", str(out)]
    code, _, err = run_cli(base + ["--threshold", "model"], capsys, monkeypatch)
    assert code == 0, err
    assert out.read_text().splitlines()[1:] == [] and "0 pairs" in err
    code, _, err = run_cli(base, capsys, monkeypatch)  # the default fits the corpus, the model's threshold unused
    assert code == 0, err
    assert len(out.read_text().splitlines()) > 50 and "from the corpus: F1-best estimate" in err
    code, _, err = run_cli(base + ["--threshold", "1.003"], capsys, monkeypatch)
    assert code == 0, err
    scores = [float(line.split("\t")[2]) for line in out.read_text().splitlines()[1:]]
    assert scores and min(scores) >= 1.003


def test_a_pair_with_its_own_bundle_threshold_is_mined_at_it(toy, tiny_model, tmp_path, capsys, monkeypatch):
    """The bundle's threshold for de-en (in either direction, any code form) wins over the shared one."""
    from emsearch.encoder import Encoder

    bundle = tmp_path / "model"
    shutil.copytree(tiny_model, bundle)
    info = json.loads((bundle / "config.json").read_text())
    info.update(mining_threshold=1e9, mining_thresholds={"deu-eng": 1.003})
    (bundle / "config.json").write_text(json.dumps(info))
    encoder = Encoder.load(bundle)
    assert encoder.mining_threshold("en", "deu_Latn") == encoder.mining_threshold("de", "eng") == 1.003
    assert encoder.mining_threshold("fr", "en") == 1e9
    out = tmp_path / "pairs.tsv"
    code, _, err = run_cli(["mine", "--src", "en", "--tgt", "de", "--index", str(toy.path), "--model", str(bundle),
                            "-o", str(out), "--threshold", "model"], capsys, monkeypatch)
    assert code == 0, err
    scores = [float(line.split("\t")[2]) for line in out.read_text().splitlines()[1:]]
    assert scores and min(scores) >= 1.003 and "threshold 1.003 from the model bundle" in err


def _as_before_centring(manifest: dict) -> None:
    manifest["index"]["centre"] = None
    manifest["index"]["requested"].pop("centre")


@pytest.mark.parametrize("centring, said", [("uncentred", "uncentred vectors"), ("language", "--centre language")])
def test_the_bundle_threshold_needs_a_corpus_centred_index(centring, said, tiny_model, tmp_path, capsys, monkeypatch):
    """The model's threshold was set on margins between vectors centred on their corpus mean: on an uncentred index
    (built before centring, or with --centre none) or one centred per language, --threshold model is refused."""
    if centring == "uncentred":
        index = build_toy_index(tmp_path, tiny_model, n=40, n_noise=10)
        edit_manifest(index.path, _as_before_centring)
    else:
        index = build_toy_index(tmp_path, tiny_model, n=40, n_noise=10, centre="language")
    bundle = tmp_path / "model"
    shutil.copytree(tiny_model, bundle)
    info = json.loads((bundle / "config.json").read_text())
    info["mining_threshold"] = 1.05
    (bundle / "config.json").write_text(json.dumps(info))
    out = tmp_path / "pairs.tsv"
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(index.path), "--model", str(bundle), "-o", str(out)]
    code, _, err = run_cli(base + ["--threshold", "model"], capsys, monkeypatch)
    assert code == 2 and said in err and "--threshold auto" in err and not out.exists()
    code, _, err = run_cli(base + ["--threshold", "1.05"], capsys, monkeypatch)
    assert code == 0 and out.is_file(), err


def bundle_with(tiny_model, tmp_path, **info) -> str:
    """A copy of the tiny model with `info` in its config (e.g. a mining threshold)."""
    bundle = tmp_path / "model"
    shutil.copytree(tiny_model, bundle)
    config = json.loads((bundle / "config.json").read_text())
    config.update(info)
    (bundle / "config.json").write_text(json.dumps(config))
    return str(bundle)


def test_cli_threshold_reported_whatever_its_source(toy, tiny_model, tmp_path, capsys, monkeypatch):
    """The default (--threshold auto, or --min-precision) chooses the threshold from the corpus's margins;
    --threshold model applies the model bundle's; each run reports the threshold, why and the fit's estimated
    precision/recall (console and OUTPUT.json)."""
    out = tmp_path / "pairs.tsv"
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(toy.path), "-o", str(out),
            "--model", bundle_with(tiny_model, tmp_path, mining_threshold=1.003)]

    def run(*extra: str) -> tuple[dict, list[float], str]:
        code, _, err = run_cli(base + list(extra), capsys, monkeypatch)
        assert code == 0, err
        scores = [float(line.split("\t")[2]) for line in out.read_text().splitlines()[1:]]
        return json.loads((tmp_path / "pairs.tsv.json").read_text()), scores, err

    model, scores, err = run("--threshold", "model")
    assert model["threshold"] == 1.003 and model["how"] == "from the model bundle" and min(scores) >= 1.003
    assert 0 < model["estimated_precision"] <= 1 and 0 < model["estimated_recall"] <= 1
    assert "threshold 1.003 from the model bundle, estimated precision" in err
    auto, scores, err = run()
    assert auto["how"] == "from the corpus: F1-best estimate" and auto["threshold"] != 1.003
    assert auto["written"] == len(scores) > 50 and min(scores) >= auto["threshold"] - 1e-6
    assert f"threshold {auto['threshold']:g} from the corpus: F1-best estimate, estimated precision" in err
    strict, strict_scores, _ = run("--min-precision", "0.999")
    assert strict["how"] == "from the corpus: min-precision 0.999" and strict["threshold"] > auto["threshold"]
    assert len(strict_scores) < len(scores) and strict["estimated_precision"] >= auto["estimated_precision"]
    given, given_scores, err = run("--threshold", "1.01")
    assert given["threshold"] == 1.01 and given["how"] == "as given" and min(given_scores) >= 1.01
    assert "threshold 1.01 as given" in err


def test_threshold_auto_needs_no_corpus_centring(tiny_model, tmp_path, capsys, monkeypatch):
    """The corpus fit is made on the index's own margins, whatever its centring."""
    index = build_toy_index(tmp_path, tiny_model, n=80, n_noise=20, centre="language")
    out = tmp_path / "pairs.tsv"
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(index.path), "-o", str(out),
            "--model", bundle_with(tiny_model, tmp_path, mining_threshold=1.05)]
    code, _, err = run_cli(base, capsys, monkeypatch)
    assert code == 0, err
    assert json.loads((tmp_path / "pairs.tsv.json").read_text())["how"].startswith("from the corpus")


def test_too_few_pairs_to_fit_take_the_model_threshold(tiny_model, tmp_path, capsys, monkeypatch):
    index = build_toy_index(tmp_path, tiny_model, n=20, n_noise=5)
    out = tmp_path / "pairs.tsv"
    base = ["mine", "--src", "de", "--tgt", "en", "--index", str(index.path), "-o", str(out),
            "--model", bundle_with(tiny_model, tmp_path, mining_threshold=1.003)]
    code, _, err = run_cli(base, capsys, monkeypatch)
    assert code == 0, err
    summary = json.loads((tmp_path / "pairs.tsv.json").read_text())
    assert summary["threshold"] == 1.003 and "too few to fit" in summary["how"]
    assert min(float(line.split("\t")[2]) for line in out.read_text().splitlines()[1:]) >= 1.003


@pytest.mark.parametrize("extra, message", [
    (["--src", "xx1", "--tgt", "en"], "unknown language"),
    (["--src", "fr", "--tgt", "en"], "no fra sentences"),
    (["--src", "de", "--tgt", "deu"], "both deu"),
    (["--src", "de", "--tgt", "en", "--mode", "best"], "retrieval mode"),
    (["--src", "de", "--tgt", "en", "--k", "0"], "k must be"),
    (["--src", "de", "--tgt", "en", "--format", "csv"], "output format"),
    (["--src", "de", "--tgt", "en", "--threshold", "nan"], "must be a finite number, auto or model, got nan"),
    (["--src", "de", "--tgt", "en", "--threshold", "inf"], "must be a finite number, auto or model, got inf"),
    (["--src", "de", "--tgt", "en", "--threshold", "high"], "must be a number, auto or model, got 'high'"),
    (["--src", "de", "--tgt", "en", "--min-precision", "1.5"], "--min-precision must be between 0 and 1"),
    (["--src", "de", "--tgt", "en", "--threshold", "1", "--min-precision", "0.9"], "not both"),
])
def test_cli_bad_input(toy, extra, message, tmp_path, capsys, monkeypatch):
    out = tmp_path / "pairs.parquet"
    code, _, err = run_cli(["mine", "--index", str(toy.path), "-o", str(out), *extra], capsys, monkeypatch)
    assert code == 2 and message in err, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_output_is_a_directory(toy, tmp_path, capsys, monkeypatch):
    from emsearch.search import mine as mine_module

    mined = []
    monkeypatch.setattr(mine_module, "mine_indexes", lambda *a, **k: mined.append(1))  # refused before any work
    code, _, err = run_cli(["mine", "--index", str(toy.path), "--src", "de", "--tgt", "en", "-o", str(tmp_path)],
                           capsys, monkeypatch)
    assert code == 2 and err.strip() == f"error: {tmp_path} is a directory: give a file name for the pairs"
    assert not mined


def test_cli_two_indexes_must_share_the_model(toy, tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "pairs.parquet"
    base = ["mine", "--src", "de", "--tgt", "en", "-o", str(out)]
    code, _, err = run_cli(base + ["--src-index", str(toy.path)], capsys, monkeypatch)
    assert code == 2 and "go together" in err
    code, _, err = run_cli(base + ["--src-index", str(toy.path), "--tgt-index", str(toy.path)], capsys, monkeypatch)
    assert code == 0, err
    assert pq.read_table(out).num_rows > 100
    # a model with other weights (another model id) cannot search this index
    other = tmp_path / "other-model"
    encoder = Encoder.load(tiny_model, device="cpu")
    with np.errstate(all="ignore"):
        next(encoder.model.parameters()).data.mul_(1.01)
    encoder.save(other)
    code, _, err = run_cli(base + ["--index", str(toy.path), "--model", str(other)], capsys, monkeypatch)
    assert code == 2 and "was built with model" in err and len(err.strip().splitlines()) == 1


def test_python_api_mines_like_the_cli(toy, tmp_path):
    import emsearch

    result = emsearch.mine("de", "en", tmp_path / "pairs.tsv", index=toy.path, threshold=1.0)
    lines = result.output.read_text(encoding="utf-8").splitlines()
    assert result.output.suffix == ".tsv" and lines[0].split("\t")[:3] == ["src_id", "tgt_id", "score"]
    assert result.written == len(lines) - 1 > 100 and result.threshold == 1.0
    assert sum(tuple(line.split("\t")[:2]) in true_pairs(toy) for line in lines[1:]) > 0.6 * len(toy.deu)
    with pytest.raises(emsearch.errors.EmsearchError, match="go together"):
        emsearch.mine("de", "en", tmp_path / "x.tsv", src_index=toy.path)
