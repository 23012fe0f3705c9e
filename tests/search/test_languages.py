"""Language codes: every accepted spelling of a language normalises to one ISO 639-3 code."""

from __future__ import annotations

import pytest

from emsearch.languages import UnknownLanguageError, known_codes, normalize_lang


@pytest.mark.parametrize("code", ["de", "deu", "deu_Latn", "deu-Latn", "ger", "GER", "De", " de "])
def test_spellings_of_german_normalise_to_deu(code):
    assert normalize_lang(code) == "deu"


@pytest.mark.parametrize(
    "code, expected",
    [
        ("zh", "cmn"), ("zho", "cmn"), ("chi", "cmn"), ("zho_Hans", "cmn"), ("zho_Hant", "cmn"), ("cmn_Hans", "cmn"),
        ("ar", "arb"), ("ara", "arb"), ("arb_Arab", "arb"),
        ("fa", "pes"), ("no", "nob"), ("nb", "nob"), ("fil", "tgl"),
        ("en", "eng"), ("eng_Latn", "eng"), ("fre", "fra"), ("yue_Hant", "yue"),
    ],
)
def test_macrolanguages_and_bibliographic_codes_fold_to_one_code(code, expected):
    assert normalize_lang(code) == expected


@pytest.mark.parametrize("code", ["xx", "xyz", "english", "de_latn", "deu_LATN", "d", "12", "de-DE-x"])
def test_unknown_codes_raise_with_a_hint(code):
    with pytest.raises(UnknownLanguageError, match="unknown language code .*ISO 639-1"):
        normalize_lang(code)


@pytest.mark.parametrize("code", ["", "   "])
def test_empty_code_raises(code):
    with pytest.raises(UnknownLanguageError, match="empty language code"):
        normalize_lang(code)


def test_unknown_language_error_is_a_value_error():
    # The CLI turns ValueError into a one-line message; the typed error must stay inside that family.
    assert issubclass(UnknownLanguageError, ValueError)


def test_every_normalised_code_is_known_and_normalises_to_itself():
    for code in sorted(known_codes()):
        assert len(code) == 3 and code.islower()
        canonical = normalize_lang(code)
        assert canonical in known_codes()
        assert normalize_lang(canonical) == canonical


def test_region_and_script_subtags_are_dropped():
    assert normalize_lang("pt-BR") == "por"
    assert normalize_lang("es_419") == "spa"
    assert normalize_lang("zh-Hant-TW") == "cmn"


@pytest.mark.parametrize("code", ["pcm", "sah", "myv", "bar", "nap", "liv", "aii", "pcm_Latn", "sah-Cyrl"])
def test_every_iso_639_3_language_is_known_not_only_those_of_the_training_data(code):
    assert normalize_lang(code) == code[:3]


@pytest.mark.parametrize("code, expected", [("ajp", "apc"), ("kzj", "dtp"), ("mol", "ron"), ("ber", "ber")])
def test_retired_codes_fold_to_their_successor_and_collective_codes_are_kept(code, expected):
    assert normalize_lang(code) == expected


@pytest.mark.parametrize("code", ["und", "mul", "zxx", "mis", "qaa"])
def test_codes_that_name_no_language_are_refused(code):
    with pytest.raises(UnknownLanguageError):
        normalize_lang(code)
