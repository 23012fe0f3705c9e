"""Search requests as `emsearch query` and the HTTP service take them: checked once, answered, serialised one way.

    request = SearchRequest.checked(["Guten Morgen"], k=5, langs=["en"], lang="de")
    for query_index, hits in enumerate(run(index, request)):
        print([hit_json(query_index, request.texts[query_index], h) for h in hits])

Every problem with a request (an empty query, k out of range, an unknown language or one the index lacks) is a
`QueryError` whose message says what to change, so the CLI prints one line and the service answers 400.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emsearch.corpus import text_lines, utf8_problem
from emsearch.errors import EmsearchError
from emsearch.languages import normalize_lang

MAX_K = 1000  # beyond this a "search" is an export; use the index files directly
MAX_CHARS = 5000  # per query text; the encoder truncates to max_len tokens long before this


class QueryError(EmsearchError):
    """A search request that cannot be answered as asked."""


@dataclass(frozen=True)
class SearchRequest:
    texts: tuple[str, ...]
    k: int = 10
    langs: tuple[str, ...] | None = None  # canonical ISO 639-3 codes of the wanted results; None = all
    nprobe: int | None = None
    lang: str | None = None  # canonical code of the queries' language (an index centred per language uses it)

    @classmethod
    def checked(cls, texts: Sequence[str], k: int = 10, langs: Sequence[str] | None = None,
                nprobe: int | None = None, *, lang: str | None = None, max_k: int = MAX_K,
                max_texts: int | None = None) -> SearchRequest:
        """Validate and normalise; raises QueryError naming the first problem."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise QueryError("texts must be a list of query strings")
        if not texts:
            raise QueryError("no query: give at least one query text")
        if max_texts is not None and len(texts) > max_texts:
            raise QueryError(f"{len(texts)} queries in one request; send at most {max_texts} at a time")
        for i, text in enumerate(texts):
            where = f"query {i + 1}" if len(texts) > 1 else "the query"
            if not isinstance(text, str):
                raise QueryError(f"{where} is not a string")
            if not text.strip():
                raise QueryError(f"{where} is empty: give some text to search for")
            if len(text) > MAX_CHARS:
                raise QueryError(f"{where} has {len(text)} characters; shorten it to at most {MAX_CHARS}")
            if utf8_problem(text):
                raise QueryError(f"{where} is {utf8_problem(text)}; send UTF-8 text")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
            raise QueryError(f"k must be a whole number from 1 to {max_k}, got {_shown(k)}")
        if nprobe is not None and (isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1):
            raise QueryError(f"nprobe must be a positive whole number, got {_shown(nprobe)}")
        if langs is not None:
            if isinstance(langs, str) or not isinstance(langs, Sequence) or not all(isinstance(x, str)
                                                                                    for x in langs):
                raise QueryError("langs must be a list of language codes")
            for code in langs:
                if utf8_problem(code):
                    raise QueryError(f"language code {code!r} is {utf8_problem(code)}")
            langs = tuple(dict.fromkeys(normalize_lang(x) for x in langs)) or None
        if lang is not None:
            if not isinstance(lang, str) or utf8_problem(lang):
                raise QueryError("lang must be the language code of the queries, e.g. \"de\"")
            lang = normalize_lang(lang)
        return cls(tuple(texts), k, langs, nprobe, lang)


def _shown(value: Any) -> str:
    """A value as an error message quotes it: short (a number of 5,000 digits is not worth printing back)."""
    if isinstance(value, int) and abs(value) >= 10**30:  # repr of over 4,300 digits is a ValueError
        return f"a number of about {round(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_queries(path: str | Path, *, strict: bool = False,
                 warn: Callable[[str], None] | None = None) -> tuple[list[str], list[int]]:
    """The queries of a UTF-8 file, one a line, and the 0-based line of each (a hit's query_index counts every
    line, so it points back into the file). A blank line is skipped, and `warn` told once; with `strict` it is
    an error."""
    path = Path(path)
    if not path.is_file():
        raise QueryError(f"{path}: no such file")
    lines = [line for _, line in text_lines(path)]
    blank = [i for i, t in enumerate(lines, 1) if not t.strip()]
    if blank and strict:
        raise QueryError(f"{path}:{blank[0]}: empty query; remove the blank line(s) or drop --strict")
    if blank and warn is not None:
        warn(f"{path}: skipped {len(blank)} blank line(s) (the first is line {blank[0]}); query_index still "
             "counts every line")
    line_of = [i for i, t in enumerate(lines) if t.strip()]
    if not line_of:
        raise QueryError(f"{path} has no queries")
    return [lines[i] for i in line_of], line_of


def split_langs(text: str | None) -> list[str] | None:
    """'en, de' → ['en', 'de']; None or '' → None."""
    langs = [x.strip() for x in (text or "").split(",") if x.strip()]
    return langs or None


def check_langs_in_index(index, langs: Sequence[str] | None) -> None:
    """Every (canonical) language asked for must be in the index."""
    have = index.languages()
    missing = [x for x in langs or () if x not in have]
    if missing:
        raise QueryError(f"language {', '.join(missing)} is not in the index; it holds {', '.join(sorted(have))}")


def run(index, request: SearchRequest) -> list:
    """Hits of every query: list (one per query) of lists of `emsearch.index.Hit`, best first."""
    check_langs_in_index(index, request.langs)
    return index.search(list(request.texts), k=request.k, langs=request.langs, nprobe=request.nprobe,
                        lang=request.lang)


def hit_json(query_index: int, query: str, hit) -> dict[str, Any]:
    """The one JSON shape of a hit, for `emsearch query --json` and the HTTP service."""
    return {"query_index": query_index, "query": query, "rank": hit.rank, "score": round(float(hit.score), 6),
            "id": hit.id, "lang": hit.lang, "text": hit.text, "meta": hit.meta}
