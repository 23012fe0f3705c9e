"""What an index centres its vectors on (`--centre corpus|language|none`): a hand-made corpus where per-language
centring changes the nearest neighbour as it should, a real build → query → mine round trip centred per language,
manifests from before per-language centring, a change of `--centre`, and the repair command that keeps it."""

from __future__ import annotations

import json
import shlex
import shutil
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from toy_index import build_toy_index
from emsearch.index import Index
from emsearch.index.build import BuildConfig, build_index
from emsearch.index.manifest import _checksum, load_index
from emsearch.index.shards import ShardedEmbeddings
from emsearch.search.mine import MineConfig, mine_to_file

# dimensions 0 and 1: what every German, every English sentence carries; 2..5: what a sentence says
E = np.eye(6, dtype=np.float32)
DEU, ENG = 2 * E[0], 2 * E[1]
HAND_MADE = {  # text → (language, its vector before normalising)
    "de: two": ("deu", DEU + E[2]), "de: three": ("deu", DEU + E[3]),
    "en: four": ("eng", ENG + E[4]), "en: five": ("eng", ENG + E[5]),
}
QUERY = "de: four"  # German, saying what "en: four" says
VECTORS = {**{t: v for t, (_, v) in HAND_MADE.items()}, QUERY: DEU + E[4]}


class HandMadeModel:
    """A model as a table: each text's vector is written above. Its dimension is 6 and no text is truncated."""

    dim, model_id, info = 6, "hand-made", {"model_id": "hand-made"}
    config = SimpleNamespace(max_len=16)
    tokenizer = SimpleNamespace(count_truncated=lambda texts: 0)

    def encode(self, texts, batch_tokens=None) -> np.ndarray:
        x = np.stack([VECTORS[t] for t in texts])
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def hand_made_index(tmp_path, centre: str):
    corpus = tmp_path / "hand.parquet"
    if not corpus.exists():
        pq.write_table(pa.table({"lang": [lang for lang, _ in HAND_MADE.values()], "text": list(HAND_MADE)}), corpus)
    out = tmp_path / centre
    build_index(BuildConfig(input=str(corpus), out=str(out), centre=centre), encoder=HandMadeModel())
    return Index.open(out, HandMadeModel())


def test_per_language_centring_finds_the_translation_where_corpus_centring_finds_the_own_language(tmp_path):
    """Centred on the corpus mean, a German query keeps the direction every German row shares, so German rows
    saying something else come first; centred each on its own language's mean, the English row saying the same
    thing wins."""
    with hand_made_index(tmp_path, "corpus") as index:
        assert index.centring == "corpus" and index.manifest.index.language_centres is None
        hits = index.search([QUERY], k=4, lang="de")[0]
        assert [h.lang for h in hits[:2]] == ["deu", "deu"] and hits[2].text == "en: four"  # cosine -0.46
    with hand_made_index(tmp_path, "language") as index:
        assert index.centring == "language"
        record = index.manifest.index
        unit = {t: v / np.linalg.norm(v) for t, v in VECTORS.items()}
        for lang in ("deu", "eng"):
            mean = np.mean([unit[t] for t, (code, _) in HAND_MADE.items() if code == lang], axis=0)
            np.testing.assert_allclose(record.language_centres[lang], mean, atol=1e-3)  # of the fp16 rows
        np.testing.assert_allclose(record.centre, np.mean([unit[t] for t in HAND_MADE], axis=0), atol=1e-3)
        hits = index.search([QUERY], k=4, lang="de")[0]
        assert hits[0].text == "en: four" and abs(hits[0].score - 3**-0.5) < 0.01  # the German rows: 0
        # rows are compared centred on their own language's mean, whatever searches them
        rows = np.arange(index.ntotal)
        own = np.asarray([record.language_centres[r.lang] for r in index.records(rows)])
        stored = ShardedEmbeddings(index.path, index.manifest.shards, 6).take(rows)
        expected = (stored - own) / np.linalg.norm(stored - own, axis=1, keepdims=True)
        np.testing.assert_allclose(index.embeddings(rows), expected, atol=1e-5)
        # a query of no named language, or of one the index lacks, is centred on the corpus mean
        q = HandMadeModel().encode([QUERY])
        np.testing.assert_allclose(index.vectors_of(q, "fr"), index.vectors_of(q), atol=1e-6)
        assert not np.allclose(index.vectors_of(q, "deu"), index.vectors_of(q))


@pytest.fixture(scope="module")
def toy(tiny_model, tmp_path_factory):
    return build_toy_index(tmp_path_factory.mktemp("by_language"), tiny_model, centre="language",
                           index_factory="IVF8,PQ8x4")


def answers(path, queries) -> list:
    """Every hit (id, score) of each query: equal fingerprints mean an index answers exactly like another."""
    with Index.open(path) as index:
        return [[(h.id, h.score) for h in found] for found in index.search(queries, k=8, lang="de")]


def test_build_query_and_mine_centred_per_language(toy, tmp_path, capsys, monkeypatch):
    with Index.open(toy.path) as index:
        record = index.manifest.index
        assert index.centring == "language" and record.requested.centring == "language"
        assert sorted(record.language_centres) == ["deu", "eng"]
        rows = np.arange(index.ntotal)
        raw = ShardedEmbeddings(index.path, index.manifest.shards, index.dim).take(rows)
        for lang in ("deu", "eng"):
            np.testing.assert_allclose(record.language_centres[lang], raw[index.rows_of_lang(lang)].mean(0),
                                       atol=1e-5)
        np.testing.assert_allclose(record.centre, raw.mean(0), atol=1e-5)
        right = sum(h[0].id == f"en-{i}" for i, h in
                    enumerate(index.search(toy.deu, k=1, langs=["eng"], lang="de")))
        assert right > 0.8 * len(toy.deu)
        # the IVF index holds the rows centred per language: its top hit is the exact one over those vectors
        xq = index.vectors_of(index.encoder.encode(toy.deu[:20]), "deu")
        D, I = index.search_vectors(xq, 1, nprobe=8)
        exact = (xq @ index.embeddings(rows).T).argmax(1)
        assert (I[:, 0] == exact).mean() >= 0.9
        pairs = mine_to_file(index, index, MineConfig("de", "en"), tmp_path / "pairs.parquet")
        mined = [(r["src_id"], r["tgt_id"]) for r in pq.read_table(pairs.output).to_pylist()]
    assert sum((f"de-{i}", f"en-{i}") in mined for i in range(len(toy.deu))) > 0.6 * len(toy.deu)
    code, out, err = run_cli(["query", toy.deu[3], "--lang", "de", "--index", str(toy.path), "--k", "1",
                              "--target-lang", "en", "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["id"] == "en-3", err
    code, out, _ = run_cli(["info", str(toy.path)], capsys, monkeypatch)
    assert code == 0 and "centred on their language's mean" in out


def test_a_manifest_from_before_per_language_centring_answers_as_before(tiny_model, tmp_path, capsys, monkeypatch):
    """An index whose manifest lacks the per-language fields opens, answers, verifies and counts as up to date
    with the default `--centre corpus`, exactly as before they existed."""
    toy = build_toy_index(tmp_path, tiny_model, n=40, n_noise=10)
    queries = toy.deu[:3]
    before = answers(toy.path, queries)

    data = json.loads((toy.path / "manifest.json").read_text(encoding="utf-8"))
    data.pop("checksum")
    data["index"].pop("language_centres")
    data["index"]["requested"].pop("by_language")
    older = json.dumps({**data, "checksum": _checksum(data)}, indent=1, ensure_ascii=False) + "\n"
    for name in ("manifest.json", "manifest.json.bak"):
        (toy.path / name).write_text(older, encoding="utf-8")
    with Index.open(toy.path) as index:
        assert index.centring == "corpus"
        assert index.search(queries, k=8, lang="de") == index.search(queries, k=8)  # only per language
    assert answers(toy.path, queries) == before
    cfg = BuildConfig(input=str(tmp_path / "corpus.parquet"), out=str(toy.path), model=str(tiny_model),
                      id_column="id", shard_size=64)
    assert build_index(cfg) == load_index(toy.path)  # up to date: nothing redone, the manifest left as it was
    assert (toy.path / "manifest.json").read_text(encoding="utf-8") == older
    assert run_cli(["verify", str(toy.path)], capsys, monkeypatch)[0] == 0


def test_a_change_of_centre_redoes_the_index_stage_only(tiny_model, tmp_path):
    toy = build_toy_index(tmp_path, tiny_model, n=40, n_noise=10)
    shards = {p: p.stat().st_mtime_ns for p in (toy.path / "embeddings").iterdir()}
    cfg = BuildConfig(input=str(tmp_path / "corpus.parquet"), out=str(toy.path), model=str(tiny_model),
                      id_column="id", shard_size=64, centre="language")
    by_language = build_index(cfg)
    assert by_language.index.language_centres is not None and by_language.index.requested.by_language
    corpus = build_index(BuildConfig(**{**cfg.__dict__, "centre": "corpus"}))
    assert corpus.index.language_centres is None and corpus.index.centre is not None
    assert {p: p.stat().st_mtime_ns for p in (toy.path / "embeddings").iterdir()} == shards  # never re-encoded


def test_the_repair_command_keeps_per_language_centring(toy, tmp_path, capsys, monkeypatch):
    idx = tmp_path / "idx"
    shutil.copytree(toy.path, idx)
    queries = toy.deu[:3]
    expected = answers(idx, queries)
    (idx / "faiss" / "group-0000.index").write_bytes(b"damaged")
    code, _, err = run_cli(["verify", str(idx)], capsys, monkeypatch)
    repair = shlex.split(err.splitlines()[-1].removeprefix("repair: ").split("  (")[0])
    assert code == 1 and repair[repair.index("--centre") + 1] == "language"
    assert "--index-factory" in repair
    code, _, err = run_cli(repair[1:], capsys, monkeypatch)
    assert code == 0 and f"repairing {idx}" in err, err
    assert run_cli(["verify", str(idx)], capsys, monkeypatch)[0] == 0
    assert answers(idx, queries) == expected
    assert load_index(idx).index.language_centres == load_index(toy.path).index.language_centres
