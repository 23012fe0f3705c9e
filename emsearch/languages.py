"""Language codes: accept ISO 639-1 (`de`), ISO 639-3 (`deu`) and FLORES-style (`deu_Latn`); normalise once.

Every code that enters emsearch (training rows, corpus rows, query flags) goes through `normalize_lang`, so
`de`, `deu`, `ger`, `de-AT` and `deu_Latn` all become `deu`. Macrolanguages fold to their dominant member
(`zh`/`zho` → `cmn`, `ar`/`ara` → `arb`), because corpora label the same text either way.

The codes themselves come from the maintained ISO 639 tables (Debian's iso-codes, through `pycountry`): all of
ISO 639-3 (~7,900 languages), its 639-1 and 639-2/B aliases, and the ISO 639-5 collective codes that corpora
use as labels (`ber`). Only the folding choices below are emsearch's own.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pycountry

from emsearch.errors import EmsearchError

# Macrolanguage → the member that corpora (FLORES, Tatoeba, TICO) mostly mean by it.
_MACRO = {
    "zho": "cmn", "ara": "arb", "fas": "pes", "msa": "zsm", "swa": "swh", "lav": "lvs", "est": "ekk",
    "uzb": "uzn", "nep": "npi", "aze": "azj", "mon": "khk", "orm": "gaz", "pus": "pbt", "sqi": "als",
    "yid": "ydd", "mlg": "plt", "nor": "nob", "kau": "knc", "que": "quy", "grn": "gug", "kur": "kmr",
    "fil": "tgl",
}

# Codes the ISO 639-3 registrar retired by merging them into another, still found in corpus labels.
_RETIRED = {"ajp": "apc", "kzj": "dtp", "mol": "ron"}

# deu_Latn (FLORES), pt-BR / es_419 (BCP 47 region), zh-Hant-TW: the language is the first subtag.
_TAGGED = re.compile(r"^([A-Za-z]{2,3})(?:[_-](?:[A-Z][a-z]{3}|[A-Za-z]{2}|[0-9]{3}))+$")


class UnknownLanguageError(EmsearchError):
    """A language code that is neither ISO 639-1, ISO 639-3 nor FLORES-style."""


@lru_cache(maxsize=1)
def known_codes() -> frozenset[str]:
    """Every code `normalize_lang` can return: the ISO 639-3 languages (not the special codes `und`, `mul`,
    `mis`, `zxx`, which name no language) and the ISO 639-5 collective codes."""
    languages = {lang.alpha_3 for lang in pycountry.languages if lang.scope != "S"}
    return frozenset(languages | {family.alpha_3 for family in pycountry.language_families})


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    """ISO 639-1 and ISO 639-2/B codes → their ISO 639-3 code."""
    out = {lang.alpha_2: lang.alpha_3 for lang in pycountry.languages if hasattr(lang, "alpha_2")}
    out.update({lang.bibliographic: lang.alpha_3 for lang in pycountry.languages if hasattr(lang, "bibliographic")})
    return out


@lru_cache(maxsize=4096)
def normalize_lang(code: str) -> str:
    """Return the canonical ISO 639-3 code for `code`, or raise UnknownLanguageError.

    >>> normalize_lang("de"), normalize_lang("deu_Latn"), normalize_lang("zh"), normalize_lang("GER")
    ('deu', 'deu', 'cmn', 'deu')
    """
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError("empty language code: give one like 'de', 'deu' or 'deu_Latn'")
    raw = code.strip()
    tagged = _TAGGED.match(raw)
    base = (tagged.group(1) if tagged else raw).lower()
    base = _aliases().get(base, base)
    base = _RETIRED.get(base, base)
    base = _MACRO.get(base, base)
    if len(base) != 3 or base not in known_codes():
        raise UnknownLanguageError(
            f"unknown language code {code!r}: use ISO 639-1 ('de'), ISO 639-3 ('deu') or FLORES ('deu_Latn')"
        )
    return base
