"""`Index`: search over all shards matches brute force on the stored vectors, for flat and IVF-PQ, with and
without a language restriction; records, embeddings and ids round-trip; wrong use is a clear error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import emsearch.index.reader as index_module
from conftest import synthetic_pairs
from emsearch.index.build import BuildConfig, build_index
from emsearch.encoder import Encoder
from emsearch.index import Hit, Index, IndexOpenError
from emsearch.index.ivf import recall_at_k

N = 700


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    eng, deu = synthetic_pairs(N, seed=11)
    path = tmp_path_factory.mktemp("corpus") / "pairs.parquet"
    pq.write_table(pa.table({"id": [f"e{i}" for i in range(N)] + [f"d{i}" for i in range(N)],
                             "lang": ["en"] * N + ["de"] * N, "text": eng + deu, "pair": list(range(N)) * 2}), path)
    return path, eng + deu


def _build(tiny_model, corpus, out, **kw):
    build_index(BuildConfig(input=str(corpus[0]), out=str(out), model=str(tiny_model), id_column="id",
                            shard_size=300, window_rows=128, **kw))
    return Index.open(out)


@pytest.fixture(scope="module")
def flat(tiny_model, corpus, tmp_path_factory):
    with _build(tiny_model, corpus, tmp_path_factory.mktemp("flat") / "idx") as index:
        yield index


@pytest.fixture(scope="module")
def ivfpq(tiny_model, corpus, tmp_path_factory):
    with _build(tiny_model, corpus, tmp_path_factory.mktemp("ivf") / "idx", index_factory="IVF16,PQ16x4") as index:
        yield index


def brute_force(index, xq, k, rows=None):
    rows = np.arange(index.ntotal) if rows is None else rows
    S = xq @ index.embeddings(rows).T
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, 1), rows[order]


def queries(n=60, seed=0):
    """Random unit vectors: far from every stored vector, a hard case for an approximate index."""
    q = np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def held_out(index, n=60, seed=0):
    """Sentences like the corpus's but not in it, encoded: the queries an index is used with."""
    eng, deu = synthetic_pairs(n // 2, seed=100 + seed)
    return index.vectors_of(index.encoder.encode(eng + deu))


def test_contents_round_trip(flat, tiny_model, corpus):
    texts = corpus[1]
    assert flat.ntotal == 2 * N and flat.dim == 64 and flat.languages() == {"deu": N, "eng": N}
    assert flat.model_id == Encoder.load(tiny_model).model_id
    rec = flat.records([0, N + 5])
    assert [(r.row, r.id, r.lang, r.text, r.meta) for r in rec] == [
        (0, "e0", "eng", texts[0], {"pair": 0}), (N + 5, "d5", "deu", texts[N + 5], {"pair": 5})]
    np.testing.assert_array_equal(flat.rows_of_lang("de"), np.arange(N, 2 * N))
    assert flat.row_of_id("d5") == N + 5
    stored = flat.encoder.encode(texts).astype(np.float16).astype(np.float32)
    # the index compares each stored vector minus the corpus mean, at unit length again
    centre = np.asarray(flat.manifest.index.centre)
    np.testing.assert_allclose(centre, stored.mean(0), atol=1e-5)
    expected = stored[:50] - centre
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(flat.embeddings(np.arange(50)), expected, atol=2e-3)
    np.testing.assert_allclose(flat.vectors_of(stored[:50]), expected, atol=1e-5)


def test_a_damaged_centre_is_refused_on_open(flat, tmp_path):
    import shutil

    from conftest import edit_manifest

    copy = tmp_path / "copy"
    shutil.copytree(flat.path, copy)
    edit_manifest(copy, lambda m: m["index"].update(centre=m["index"]["centre"][:-1]))
    with pytest.raises(IndexOpenError, match="the recorded centre has 63 values for vectors of dimension 64"):
        Index.open(copy)


def test_an_uncentred_build_compares_the_model_vectors(tiny_model, corpus, tmp_path):
    with _build(tiny_model, corpus, tmp_path / "raw", centre="none") as raw:
        assert not raw.centred and raw.manifest.index.centre is None
        stored = raw.encoder.encode(corpus[1][:50]).astype(np.float16).astype(np.float32)
        np.testing.assert_allclose(raw.embeddings(np.arange(50)), stored, atol=1e-6)
        hit = raw.search([corpus[1][7]], k=1)[0][0]
        assert hit.row == 7 and hit.score == pytest.approx(float(stored[7] @ stored[7]), abs=2e-3)


def test_flat_search_is_exact(flat):
    xq = queries()
    D, I = flat.search_vectors(xq, 10)
    Dt, It = brute_force(flat, xq, 10)
    np.testing.assert_allclose(D, Dt, atol=1e-5)
    assert recall_at_k(D, Dt, 10) == 1.0
    D, I = flat.search_vectors(xq, 5, langs=["deu_Latn"])
    Dt, It = brute_force(flat, xq, 5, flat.rows_of_lang("de"))
    np.testing.assert_allclose(D, Dt, atol=1e-5)
    assert (I >= N).all()


def test_language_restriction_through_the_faiss_selector(flat, ivfpq, monkeypatch):
    monkeypatch.setattr(index_module, "EXACT_SUBSET_ROWS", 0)  # force the IDSelectorBitmap path
    xq = held_out(flat, seed=3)
    for shared in (flat, ivfpq):
        with Index.open(shared.path) as index:  # fresh: no restriction cached by earlier tests
            D, I = index.search_vectors(xq, 10, langs=["en"], nprobe=16)
            assert index._restriction(["en"]).selector is not None
            assert ((I >= 0) & (I < N)).all()
            Dt, _ = brute_force(index, xq, 10, index.rows_of_lang("en"))
            assert recall_at_k(D, Dt, 10) >= 0.9


def test_ivfpq_recall_and_reranked_scores(ivfpq):
    info = ivfpq.manifest.index
    assert info.params.kind == "ivf" and info.recall_at_10 >= 0.95 and info.rerank >= 100
    xq = held_out(ivfpq, seed=5)
    Dt, _ = brute_force(ivfpq, xq, 10)
    D, I = ivfpq.search_vectors(xq, 10)  # the calibrated default nprobe
    assert recall_at_k(D, Dt, 10) >= 0.9
    # scores are exact cosines of the returned rows (re-ranked against the stored vectors)
    exact = np.einsum("ij,ikj->ik", xq, ivfpq.embeddings(I.ravel()).reshape(*I.shape, -1))
    np.testing.assert_allclose(D, exact, atol=1e-5)
    assert (np.diff(D, axis=1) <= 1e-7).all()
    D1, _ = ivfpq.search_vectors(xq, 10, nprobe=1)
    assert recall_at_k(D1, Dt, 10) <= recall_at_k(D, Dt, 10)


def test_text_search_returns_hits(flat, corpus):
    hits = flat.search([corpus[1][3], corpus[1][N + 3]], k=3, langs=["eng"])
    assert len(hits) == 2 and all(len(h) == 3 for h in hits)
    top = hits[0][0]
    assert isinstance(top, Hit) and top.rank == 1 and top.row == 3 and top.id == "e3" and top.lang == "eng"
    assert top.score == pytest.approx(1.0, abs=2e-3) and top.score <= 1.0 and top.meta == {"pair": 3}
    assert [h.rank for h in hits[1]] == [1, 2, 3] and all(h.lang == "eng" for h in hits[1])


def test_more_results_than_rows(flat):
    D, I = flat.search_vectors(queries(2), 5, langs=["eng"])
    assert I.shape == (2, 5)
    D, I = flat.search_vectors(queries(2), 2 * N + 3)
    assert (I[:, -3:] == -1).all() and np.isneginf(D[:, -3:]).all() and (I[:, : 2 * N] >= 0).all()


def test_misuse_is_a_clear_error(flat):
    with pytest.raises(ValueError, match=r"shape \(n, 64\)"):
        flat.search_vectors(np.zeros((2, 32), np.float32), 3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        flat.search_vectors(queries(1), 0)
    with pytest.raises(ValueError, match="nprobe must be at least 1"):
        flat.search_vectors(queries(1), 3, nprobe=0)
    with pytest.raises(ValueError, match="langs is empty"):
        flat.search_vectors(queries(1), 3, langs=[])
    with pytest.raises(ValueError, match=r"no rows in language 'fr' \(fra\); it holds deu, eng"):
        flat.rows_of_lang("fr")
    with pytest.raises(ValueError, match="unknown language code"):
        flat.search_vectors(queries(1), 3, langs=["klingon"])
    with pytest.raises(TypeError, match="wrap a single query in a list"):
        flat.search("hello")
    with pytest.raises(LookupError, match="is not in the sentence store"):
        flat.records([2 * N])


def test_open_refuses_another_model_and_unfinished_builds(flat, tiny_model, tmp_path):
    other = Encoder.load(tiny_model)
    next(other.model.parameters()).data += 0.01
    other.save(tmp_path / "other")
    other = Encoder.load(tmp_path / "other")
    with pytest.raises(IndexOpenError, match=f"built with model {flat.model_id}, not {other.model_id}"):
        Index.open(flat.path, other)
    with pytest.raises(IndexOpenError, match=f"built with model {flat.model_id}"):
        Index.open(flat.path, model=tmp_path / "other")
    with pytest.raises(IndexOpenError, match="no index here"):
        Index.open(tmp_path)


def test_merged_ondisk_index_gives_the_same_results(ivfpq, tiny_model, corpus, tmp_path, capfd):
    with _build(tiny_model, corpus, tmp_path / "m", index_factory="IVF16,PQ16x4", merge=True) as merged:
        assert capfd.readouterr().out == ""  # faiss's on-disk chatter is kept off stdout
        info = merged.manifest.index
        assert info.merged and (tmp_path / "m" / info.merged.data).is_file()
        assert not list((tmp_path / "m" / "faiss").glob("group-*"))  # the groups were folded in
        xq = queries(seed=9)
        for langs in (None, ["de"]):
            D1, I1 = ivfpq.search_vectors(xq, 10, langs=langs, nprobe=4)
            D2, I2 = merged.search_vectors(xq, 10, langs=langs, nprobe=4)
            np.testing.assert_array_equal(I1, I2)
            np.testing.assert_array_equal(D1, D2)


def test_the_same_index_opens_twice_in_one_process(flat):
    xq = queries(5)
    expected = flat.search_vectors(xq, 3)
    with Index.open(flat.path) as second:
        np.testing.assert_array_equal(second.search_vectors(xq, 3)[1], expected[1])
    with Index.open(flat.path) as third:  # closing the second left the first, and a fresh open, working
        assert third.records([0])[0] == flat.records([0])[0]
    np.testing.assert_array_equal(flat.search_vectors(xq, 3)[1], expected[1])
