"""Language codes: accept ISO 639-1 (`de`), ISO 639-3 (`deu`) and FLORES-style (`deu_Latn`); normalise once.

Every code that enters emsearch (training rows, corpus rows, query flags) goes through `normalize_lang`, so
`de`, `deu`, `ger`, `de-AT` and `deu_Latn` all become `deu`. Macrolanguages fold to their dominant member
(`zh`/`zho` → `cmn`, `ar`/`ara` → `arb`), because corpora label the same text either way.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from emsearch.errors import EmsearchError

# ISO 639-1 → ISO 639-3 (individual language where the 639-1 code names a macrolanguage; see _MACRO).
_ISO1 = dict(
    pair.split(":")
    for pair in """
aa:aar ab:abk ae:ave af:afr ak:aka am:amh an:arg ar:ara as:asm av:ava ay:aym az:aze ba:bak be:bel bg:bul
bi:bis bm:bam bn:ben bo:bod br:bre bs:bos ca:cat ce:che ch:cha co:cos cr:cre cs:ces cu:chu cv:chv cy:cym
da:dan de:deu dv:div dz:dzo ee:ewe el:ell en:eng eo:epo es:spa et:est eu:eus fa:fas ff:ful fi:fin fj:fij
fo:fao fr:fra fy:fry ga:gle gd:gla gl:glg gn:grn gu:guj gv:glv ha:hau he:heb hi:hin ho:hmo hr:hrv ht:hat
hu:hun hy:hye hz:her ia:ina id:ind ie:ile ig:ibo ii:iii ik:ipk io:ido is:isl it:ita iu:iku ja:jpn jv:jav
ka:kat kg:kon ki:kik kj:kua kk:kaz kl:kal km:khm kn:kan ko:kor kr:kau ks:kas ku:kur kv:kom kw:cor ky:kir
la:lat lb:ltz lg:lug li:lim ln:lin lo:lao lt:lit lu:lub lv:lav mg:mlg mh:mah mi:mri mk:mkd ml:mal mn:mon
mr:mar ms:msa mt:mlt my:mya na:nau nb:nob nd:nde ne:nep ng:ndo nl:nld nn:nno no:nor nr:nbl nv:nav ny:nya
oc:oci oj:oji om:orm or:ory os:oss pa:pan pi:pli pl:pol ps:pus pt:por qu:que rm:roh rn:run ro:ron ru:rus
rw:kin sa:san sc:srd sd:snd se:sme sg:sag si:sin sk:slk sl:slv sm:smo sn:sna so:som sq:sqi sr:srp ss:ssw
st:sot su:sun sv:swe sw:swa ta:tam te:tel tg:tgk th:tha ti:tir tk:tuk tl:tgl tn:tsn to:ton tr:tur ts:tso
tt:tat tw:twi ty:tah ug:uig uk:ukr ur:urd uz:uzb ve:ven vi:vie vo:vol wa:wln wo:wol xh:xho yi:yid yo:yor
za:zha zh:zho zu:zul
""".split()
)

# ISO 639-2/B bibliographic codes → 639-3.
_ISO2B = {
    "alb": "sqi", "arm": "hye", "baq": "eus", "bur": "mya", "chi": "zho", "cze": "ces", "dut": "nld",
    "fre": "fra", "geo": "kat", "ger": "deu", "gre": "ell", "ice": "isl", "mac": "mkd", "mao": "mri",
    "may": "msa", "per": "fas", "rum": "ron", "slo": "slk", "tib": "bod", "wel": "cym",
}

# Macrolanguage → the member that corpora (FLORES, Tatoeba, TICO) mostly mean by it.
_MACRO = {
    "zho": "cmn", "ara": "arb", "fas": "pes", "msa": "zsm", "swa": "swh", "lav": "lvs", "est": "ekk",
    "uzb": "uzn", "nep": "npi", "aze": "azj", "mon": "khk", "orm": "gaz", "pus": "pbt", "sqi": "als",
    "yid": "ydd", "mlg": "plt", "nor": "nob", "kau": "knc", "que": "quy", "grn": "gug", "kur": "kmr",
    "fil": "tgl",
}

# deu_Latn (FLORES), pt-BR / es_419 (BCP 47 region), zh-Hant-TW: the language is the first subtag.
_TAGGED = re.compile(r"^([A-Za-z]{2,3})(?:[_-](?:[A-Z][a-z]{3}|[A-Za-z]{2}|[0-9]{3}))+$")


class UnknownLanguageError(EmsearchError):
    """A language code that is neither ISO 639-1, ISO 639-3 nor FLORES-style."""


@lru_cache(maxsize=1)
def known_codes() -> frozenset[str]:
    """ISO 639-3 codes emsearch recognises: 639-1 targets, FLORES-200, and every code of the training data."""
    listed = resources.files("emsearch").joinpath("resources/iso639_3.txt").read_text(encoding="utf-8").split()
    return frozenset(listed) | frozenset(_ISO1.values()) | frozenset(_MACRO.values())


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
    if len(base) == 2:
        base = _ISO1.get(base, base)
    base = _ISO2B.get(base, base)
    base = _MACRO.get(base, base)
    if len(base) != 3 or base not in known_codes():
        raise UnknownLanguageError(
            f"unknown language code {code!r}: use ISO 639-1 ('de'), ISO 639-3 ('deu') or FLORES ('deu_Latn')"
        )
    return base
