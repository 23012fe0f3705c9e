"""`emsearch query` and the request checks it shares with the service, on a real toy index."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from toy_index import build_toy_index
from emsearch.languages import UnknownLanguageError
from emsearch.search.query import QueryError, SearchRequest, read_queries

HIT_KEYS = {"query_index", "query", "rank", "score", "id", "lang", "text", "meta"}


@pytest.fixture(scope="module")
def toy(tiny_model, tmp_path_factory):
    return build_toy_index(tmp_path_factory.mktemp("query_index"), tiny_model)


def test_request_checks():
    r = SearchRequest.checked(["a", "b"], 3, ["de", "deu_Latn", "en"])
    assert r.texts == ("a", "b") and r.k == 3 and r.langs == ("deu", "eng")
    assert SearchRequest.checked(["a"], 1, []).langs is None
    assert SearchRequest.checked(["a"], 1, lang="de").lang == "deu" and SearchRequest.checked(["a"]).lang is None
    with pytest.raises(QueryError, match="lang must be the language code"):
        SearchRequest.checked(["a"], 1, lang=["de"])
    for texts, k, match in [([], 5, "no query"), (["ok", "  "], 5, "query 2 is empty"), ("text", 5, "list"),
                            (["a"], 0, "k must be"), (["a"], 1001, "k must be"), (["a"], True, "k must be"),
                            (["a"], 2.5, "k must be"), (["x" * 6000], 5, "shorten")]:
        with pytest.raises(QueryError, match=match):
            SearchRequest.checked(texts, k)
    with pytest.raises(QueryError, match="at most 2"):
        SearchRequest.checked(["a", "b", "c"], 1, max_texts=2)
    with pytest.raises(UnknownLanguageError):
        SearchRequest.checked(["a"], 1, ["klingon"])


def test_query_json_finds_the_translation(toy, capsys, monkeypatch):
    # a German-side query must find its English translation among English results
    i = 7
    code, out, err = run_cli(["query", toy.deu[i], "--lang", "de", "--index", str(toy.path), "--k", "5",
                              "--target-lang", "en", "--json"], capsys, monkeypatch)
    assert code == 0, err
    hits = [json.loads(line) for line in out.splitlines()]
    assert len(hits) == 5 and all(set(h) == HIT_KEYS for h in hits)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert all(h["lang"] == "eng" and h["query_index"] == 0 and h["query"] == toy.deu[i] for h in hits)
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    assert hits[0]["id"] == f"en-{i}" and hits[0]["text"] == toy.eng[i] and hits[0]["meta"] == {"source": "toy"}


def test_query_file_and_table(toy, tmp_path, capsys, monkeypatch):
    queries = tmp_path / "queries.txt"
    queries.write_text(f"{toy.deu[1]}\n{toy.deu[2]}\n{toy.deu[3]}\n")
    code, out, err = run_cli(["query", "--file", str(queries), "--index", str(toy.path), "-k", "2",
                              "--target-lang", "eng", "--json"], capsys, monkeypatch)
    assert code == 0, err
    hits = [json.loads(line) for line in out.splitlines()]
    assert [h["query_index"] for h in hits] == [0, 0, 1, 1, 2, 2]
    top = {h["query_index"]: h["id"] for h in hits if h["rank"] == 1}
    assert sum(top[q] == f"en-{q + 1}" for q in range(3)) >= 2  # the tiny model is ~85% right
    # A blank line is skipped with a warning, and query_index stays the line's own; --strict refuses it.
    queries.write_text(f"{toy.deu[1]}\n\n{toy.deu[3]}\n")
    code, out, err = run_cli(["query", "--file", str(queries), "--index", str(toy.path), "-k", "1", "--json"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert [json.loads(line)["query_index"] for line in out.splitlines()] == [0, 2]
    assert "skipped 1 blank line(s) (the first is line 2)" in " ".join(err.split())
    code, out, err = run_cli(["query", "--file", str(queries), "--index", str(toy.path), "--strict"],
                             capsys, monkeypatch)
    assert code == 2 and "queries.txt:2: empty query" in err
    # no language filter: the query itself is in the index and must come first
    code, out, err = run_cli(["query", toy.deu[4], "--index", str(toy.path), "-k", "3"], capsys, monkeypatch)
    assert code == 0, err
    assert "de-4" in out and "rank" in out and "deu" in out


@pytest.mark.parametrize("args, message", [
    (["query", "", "-k", "3"], "empty"),
    (["query", "hello", "-k", "0"], "k must be"),
    (["query", "hello", "-k", "100000"], "k must be"),
    (["query", "hello", "--target-lang", "qq"], "unknown language"),
    (["query", "hello", "--target-lang", "fr"], "not in the index"),
    (["query", "hello", "--lang", "zz"], "unknown language"),
    (["query"], "give either a query or --file"),
])
def test_query_bad_input(toy, args, message, capsys, monkeypatch):
    code, out, err = run_cli(args + ["--index", str(toy.path)], capsys, monkeypatch)
    assert code == 2 and message in err, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_query_bad_index(toy, tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["query", "hello", "--index", str(tmp_path / "nowhere")], capsys, monkeypatch)
    assert code == 2 and "no index here" in err and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    code, _, err = run_cli(["query", "hello", "--index", str(broken)], capsys, monkeypatch)
    assert code == 2 and "corrupt" in err and "Traceback" not in err


def test_python_api_returns_typed_hits(toy):
    import emsearch

    with emsearch.Index.open(toy.path) as index:
        hits = index.search([toy.eng[0]], k=3, langs=["de"])[0]
    assert all(isinstance(h, emsearch.Hit) and h.lang == "deu" for h in hits) and hits[0].id == "de-0"


def test_python_api_opens_an_index_by_name(toy, tmp_path, monkeypatch):
    """`Index.open` takes what the commands take: a name under indexes/, or nothing for the only index there."""
    import emsearch

    (tmp_path / "indexes").mkdir()
    (tmp_path / "indexes" / "toy").symlink_to(toy.path)
    monkeypatch.chdir(tmp_path)
    for name in ("toy", None):
        with emsearch.Index.open(name) as index:
            assert index.path.resolve() == toy.path.resolve() and index.ntotal == 2 * (150 + 60)


def test_read_queries_keeps_each_query_line(tmp_path):
    path = tmp_path / "q.txt"
    path.write_bytes("\ufeffeins\n\n  \nzwei\r\n".encode())
    warned = []
    assert read_queries(path, warn=warned.append) == (["eins", "zwei"], [0, 3])
    assert warned == [f"{path}: skipped 2 blank line(s) (the first is line 2); query_index still counts every line"]
    with pytest.raises(QueryError, match=r"q.txt:2: empty query"):
        read_queries(path, strict=True)
    path.write_text("\n")
    with pytest.raises(QueryError, match="has no queries"):
        read_queries(path)
