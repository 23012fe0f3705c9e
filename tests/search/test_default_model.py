"""The shipped default model does the product's job on the bundled example corpus (25 sentences × 11 languages).

These tests guard the model that ships, not the code: a retrained default that stops finding translations fails
here before a user finds out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from emsearch import BuildConfig, Encoder, Index, build_index

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus.parquet"


@pytest.fixture(scope="module")
def corpus() -> dict[str, list]:
    return pq.read_table(CORPUS).to_pydict()


def test_every_sentence_finds_a_translation_first(corpus):
    vectors = Encoder.load().encode(corpus["text"])
    group = np.array([i[:5] for i in corpus["id"]])  # ex-07.. : the translations of one sentence
    lang = np.array(corpus["lang"])
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    # Searching the whole corpus with each of its sentences: the nearest other row is one of its translations.
    found = (group[sim.argmax(1)] == group).mean()
    assert found >= 0.9, f"the nearest other row is a translation for {found:.1%} of the rows"
    # Each language against English, both ways (the model is trained on X↔English pairs).
    eng = np.flatnonzero(lang == "eng")
    right = []
    for other in sorted(set(lang) - {"eng"}):
        rows = np.flatnonzero(lang == other)
        right += [group[eng[sim[rows][:, eng].argmax(1)]] == group[rows],
                  group[rows[sim[eng][:, rows].argmax(1)]] == group[eng]]
    assert np.concatenate(right).mean() >= 0.9


def test_the_readme_queries_find_their_answers_first(tmp_path):
    build_index(BuildConfig(input=str(CORPUS), out=str(tmp_path / "corpus"), id_column="id"))
    with Index.open(tmp_path / "corpus") as index:
        # "What will the weather be tomorrow?": the corpus's one forecast, in English and in Japanese.
        hits = index.search(["Wie wird das Wetter morgen?"], k=2, langs=["en", "ja"])[0]
        assert {h.id for h in hits} == {"ex-0201", "ex-0207"}
        hits = index.search(["Où est-ce que je peux acheter un billet de bus ?"], k=1, langs=["en"])[0]
        assert hits[0].text == "Where can I buy a ticket for the bus?"


def test_the_readme_http_example_is_what_the_server_answers(tmp_path):
    """The request and response in the README's HTTP section, run: a retrained default model updates them."""
    import json
    import re

    from emsearch.server import SearchService

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    http = readme[readme.index("## HTTP API"):]
    request = json.loads(re.search(r"curl -s localhost:8080/search -d '(.+)'", http).group(1))
    response = json.loads(re.search(r"```json\n(.+?)\n```", http, re.S).group(1))
    build_index(BuildConfig(input=str(CORPUS), out=str(tmp_path / "corpus"), id_column="id"))
    with Index.open(tmp_path / "corpus") as index:
        answer = SearchService(index).search(request)
    assert [[{**h, "score": None} for h in q] for q in answer["results"]] == \
        [[{**h, "score": None} for h in q] for q in response["results"]]
    assert [h["score"] for h in answer["results"][0]] == pytest.approx(
        [h["score"] for h in response["results"][0]], abs=1e-3)
