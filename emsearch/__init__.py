"""emsearch: cross-lingual retrieval on an EMS sentence encoder.

    import emsearch
    vectors = emsearch.Encoder.load().encode(["Guten Morgen", "Good morning"])
    emsearch.build_index(emsearch.BuildConfig(input="news.parquet", out="indexes/news"))
    hits = emsearch.Index.open("indexes/news").search(["Guten Morgen"], k=5, langs=["en"])[0]
    emsearch.mine("de", "en", "pairs.tsv", index="indexes/news")
"""

from emsearch.lazy import lazy_exports
from emsearch.version import __version__

__all__ = ["BuildConfig", "Encoder", "Hit", "Index", "__version__", "build_index", "mine", "normalize_lang"]
__getattr__ = lazy_exports(__name__, {
    "BuildConfig": "emsearch.index.build",
    "build_index": "emsearch.index.build",
    "Encoder": "emsearch.encoder",
    "Hit": "emsearch.index.reader",
    "Index": "emsearch.index.reader",
    "normalize_lang": "emsearch.languages",
    "mine": "emsearch.search.mine",
})
