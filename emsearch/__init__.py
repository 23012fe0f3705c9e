"""emsearch: cross-lingual retrieval on an EMS sentence encoder.

    import emsearch
    vectors = emsearch.Encoder.load().encode(["Guten Morgen", "Good morning"])
    emsearch.build_index(emsearch.BuildConfig(input="news.parquet", out="indexes/news"))
    hits = emsearch.Index.open("indexes/news").search(["Guten Morgen"], k=5, langs=["en"])[0]
    emsearch.mine("de", "en", "pairs.tsv", index="indexes/news")
"""

from emsearch.index.build import BuildConfig, build_index
from emsearch.encoder import Encoder
from emsearch.index import Hit, Index
from emsearch.languages import normalize_lang
from emsearch.search.mine import mine
from emsearch.version import __version__

__all__ = ["BuildConfig", "Encoder", "Hit", "Index", "__version__", "build_index", "mine", "normalize_lang"]
