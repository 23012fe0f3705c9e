"""emsearch: cross-lingual retrieval on an EMS sentence encoder.

    import emsearch
    vectors = emsearch.Encoder.load().encode(["Guten Morgen", "Good morning"])
"""

from emsearch.encoder import Encoder
from emsearch.languages import normalize_lang

__all__ = ["Encoder", "normalize_lang"]
__version__ = "0.1.0"
