"""Corpus readers: every format yields the same rows; bad input fails up front with the line or column named."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emsearch.corpus import Corpus, CorpusError, CorpusSpec

TEXTS = ["Guten Morgen", "", "Wie geht's?", None, "Gute Nacht"]
LANGS = ["de", "deu", "deu_Latn", "de", "ger"]


def rows_of(path, **kw):
    corpus = Corpus(CorpusSpec(path, **kw))
    n = corpus.scan()
    rows = list(corpus.rows())
    assert len(rows) == n
    return corpus, rows


def test_parquet_keeps_extra_columns_and_skips_empty_texts(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [10, 11, 12, 13, 14], "lang": LANGS, "text": TEXTS,
                             "source": list("abcde")}), path)
    corpus, rows = rows_of(path, id_column="id")
    assert [r.text for r in rows] == ["Guten Morgen", "Wie geht's?", "Gute Nacht"]
    assert [r.id for r in rows] == ["10", "12", "14"]
    assert {r.lang for r in rows} == {"deu"}
    assert rows[1].meta == {"source": "c"} and rows[1].position == 2
    assert corpus.skipped == 2


def test_an_id_column_gives_the_ids_without_a_flag(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c", "d", "e"], "lang": LANGS, "text": TEXTS}), path)
    corpus, rows = rows_of(path)
    assert corpus.id_column == "id"
    assert [r.id for r in rows] == ["a", "c", "e"] and rows[0].meta == {}
    tsv = tmp_path / "c.tsv"
    tsv.write_text("key\tlang\ttext\n" + "".join(f"k{i}\t{lang}\t{t or ''}\n"
                                                   for i, (lang, t) in enumerate(zip(LANGS, TEXTS))), encoding="utf-8")
    corpus, rows = rows_of(tsv)
    assert corpus.id_column is None and [r.id for r in rows] == ["0", "2", "4"] and rows[0].meta == {"key": "k0"}


def test_jsonl_tsv_and_text_agree(tmp_path):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps({"lang": lang, "text": t, "n": i})
                               for i, (lang, t) in enumerate(zip(LANGS, TEXTS))) + "\n\n", encoding="utf-8")
    tsv = tmp_path / "c.tsv"
    tsv.write_text("lang\ttext\tn\n" + "".join(f"{lang}\t{t or ''}\t{i}\n"
                                                for i, (lang, t) in enumerate(zip(LANGS, TEXTS))), encoding="utf-8")
    txt = tmp_path / "c.txt"
    txt.write_text("\n".join(t or "" for t in TEXTS) + "\n", encoding="utf-8")
    outputs = [rows_of(jsonl)[1], rows_of(tsv)[1], rows_of(txt, lang="de")[1]]
    for rows in outputs:
        assert [(r.id, r.lang, r.text) for r in rows] == [("0", "deu", "Guten Morgen"), ("2", "deu", "Wie geht's?"),
                                                           ("4", "deu", "Gute Nacht")]
    assert outputs[0][2].meta == {"n": 4} and outputs[1][2].meta == {"n": "4"} and outputs[2][2].meta == {}


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b'{"lang": "de", "txt": "x"}\n', "no column 'text' (columns: lang, txt)"),
    (b'{"lang": "de", "text": "ok"}\n{"lang": "de", "text": "caf\xe9"}\n', ".jsonl:2: not valid UTF-8"),
    (b'{"lang": "de", "text": "ok"}\nnot json\n', ".jsonl:2: not JSON"),
    (b'{"lang": "xx-nope", "text": "ok"}\n', "unknown language code"),
    (b'{"text": "ok"}\n', "no language column 'lang'"),
    (b'{"lang": null, "text": "ok"}\n', ":1: no language"),
    (b'{"lang": "de", "text": 5}\n', "'text' is a int, not a string"),
    (b'{"lang": "de", "text": ""}\n', "no text to index"),
])
def test_bad_jsonl(tmp_path, content, message):
    path = tmp_path / "c.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=None) as e:
        Corpus(CorpusSpec(path)).scan()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_tsv_and_text(tmp_path):
    tsv = tmp_path / "c.tsv"
    tsv.write_text("lang\ttext\nde\tone\tstray\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c.tsv:2: 3 tab-separated fields, the header has 2"):
        Corpus(CorpusSpec(tsv)).scan()
    txt = tmp_path / "c.txt"
    txt.write_text("hello\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="give its language with --lang"):
        Corpus(CorpusSpec(txt)).scan()
    assert list(Corpus(CorpusSpec(txt)).texts()) == ["hello"]  # texts alone need no language
    txt.write_bytes(b"fine\nbad \xff line\n")
    with pytest.raises(CorpusError, match=r"c.txt:2: not valid UTF-8"):
        Corpus(CorpusSpec(txt, lang="en")).scan()
    (tmp_path / "c.csv").write_text("lang,text\nde,x\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="convert it to TSV or parquet"):
        Corpus(CorpusSpec(tmp_path / "c.csv"))


def test_parquet_errors(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"lang": ["de"], "sentence": ["x"]}), path)
    with pytest.raises(CorpusError, match=r"no column 'text' \(columns: lang, sentence\)"):
        Corpus(CorpusSpec(path)).scan()
    with pytest.raises(CorpusError, match="no column 'uid'"):
        Corpus(CorpusSpec(path, text_column="sentence", id_column="uid")).scan()
    pq.write_table(pa.table({"lang": ["de"], "text": [3]}), path)
    with pytest.raises(CorpusError, match="holds int64, not text"):
        Corpus(CorpusSpec(path)).scan()
    pq.write_table(pa.table({"lang": ["de", "de"], "text": ["a", "b"], "id": ["x", None]}), path)
    with pytest.raises(CorpusError, match="row 1: null id"):
        Corpus(CorpusSpec(path, id_column="id")).scan()
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(CorpusError, match="not a readable parquet file"):
        Corpus(CorpusSpec(tmp_path / "junk.parquet")).scan()


def test_lang_flag_overrides_column_and_keeps_it_as_metadata(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"lang": ["??", "??"], "text": ["a", "b"]}), path)
    _, rows = rows_of(path, lang="fr")
    assert [r.lang for r in rows] == ["fra", "fra"] and rows[0].meta == {"lang": "??"}
