"""Corpus readers: parquet, JSONL, TSV and plain text, streamed row by row in bounded memory.

| format     | suffix                   | text / language / id                                                         |
|------------|--------------------------|------------------------------------------------------------------------------|
| parquet    | .parquet .pq             | columns `--text-column`, `--lang-column` (or `--lang`), optional `--id-column` |
| JSONL      | .jsonl .ndjson .json     | one object per line, same keys; blank lines are not records                   |
| TSV        | .tsv                     | a header line names the columns (tab-separated, no quoting); blank lines skipped |
| plain text | .txt and anything else   | one sentence per line, `--lang` required                                     |

Every other column (key) is kept as metadata. A row's id is its `--id-column` value as a string; without that
flag, the `id` column's value where the input has one, or else the row's 0-based position among the input's
records (for plain text: its line number - 1).
Null, missing and blank texts are skipped and counted. `scan()` reads the whole input once before anything is
written, so invalid UTF-8, malformed lines, unknown languages and null ids fail up front with the line named,
never hours into a build; duplicate ids are caught while storing (see `store.Store.put_shard`).

Text that is not valid Unicode is refused, never replaced: bytes that are not UTF-8 (named by line), and in JSON a
lone surrogate escape such as "\\ud800" (named by line and key), which decodes to a string no file can hold.
`utf8_problem` is the one test; the query side (`SearchRequest`, `Encoder.encode`) applies the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from emsearch.errors import EmsearchError
from emsearch.languages import UnknownLanguageError, normalize_lang

INPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
                 ".tsv": "tsv"}
UNSUPPORTED = {".csv": "convert it to TSV or parquet", ".gz": "decompress it first", ".zst": "decompress it first",
               ".bz2": "decompress it first", ".xz": "decompress it first"}


class CorpusError(EmsearchError):
    """Input that cannot be indexed: the message names the file, the line or column, and the fix."""


def utf8_problem(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8, or None: a lone surrogate, which is what a JSON escape like "\\ud800"
    or undecodable bytes in a command-line argument become in Python."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"not valid Unicode (a lone surrogate, U+{ord(text[e.start]):04X}, at character {e.start + 1})"
    return None


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, decoded line without its newline) of a UTF-8 text file; invalid UTF-8 is an error
    naming the line. A byte-order mark opening the file (as some editors write) is not part of its first line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start}); "
                                  "re-encode the file as UTF-8") from None


@dataclass(frozen=True)
class CorpusSpec:
    """Where the text, language and id of each row are."""

    path: Path
    text_column: str = "text"
    lang_column: str = "lang"
    id_column: str | None = None  # None: the `id` column where there is one, else the row's position
    lang: str | None = None  # the language of every row; required for plain text


DEFAULT_ID_COLUMN = "id"


class Row(NamedTuple):
    position: int  # 0-based record number in the input
    id: str
    lang: str
    text: str
    meta: dict[str, Any]


def corpus_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED:
        raise CorpusError(f"{path}: {suffix} input is not supported; {UNSUPPORTED[suffix]}")
    return INPUT_FORMATS.get(suffix, "text")


class Corpus:
    """Rows of one input file. `skipped` counts the empty texts seen by the last full pass; `id_column` is the
    column the ids come from (None: positions), known once the header or first record has been read."""

    def __init__(self, spec: CorpusSpec):
        self.spec = spec
        self.path = Path(spec.path)
        if not self.path.is_file():
            raise CorpusError(f"{self.path}: no such file")
        if self.path.stat().st_size == 0:
            raise CorpusError(f"{self.path}: the file is empty")
        self.format = corpus_format(self.path)
        self.fixed_lang = self._language(spec.lang, "--lang") if spec.lang is not None else None
        self.skipped = 0
        self.id_column = spec.id_column

    def scan(self) -> int:
        """Read everything once, validating; returns the number of rows that will be indexed."""
        kept = sum(1 for _ in self.rows())
        if kept == 0:
            raise CorpusError(f"{self.path}: no text to index ({self.skipped:,} rows, all empty)")
        return kept

    def rows(self) -> Iterator[Row]:
        """The rows to index, in input order: empty texts are skipped (and counted), every row has a language."""
        if self.format == "text" and self.fixed_lang is None:
            raise CorpusError(f"{self.path} is plain text (one sentence per line): give its language with --lang")
        self.skipped = 0
        for position, record, where in self._records(with_langs=True):
            row = self._row(position, record, where)
            if row is not None:
                yield row

    def texts(self) -> Iterator[str]:
        """Every record's text in input order, an empty one as "" (for `embed`, whose row i is record i); no
        language or id is needed."""
        for _, record, where in self._records(with_langs=False):
            yield self._text(record, where) or ""

    def _records(self, with_langs: bool) -> Iterator[tuple[int, dict[str, Any], str]]:
        """(0-based position, column → value, `where` naming the record in errors) for every record."""
        reader = {"parquet": self._parquet, "jsonl": self._jsonl, "tsv": self._tsv, "text": self._lines_as_records}
        yield from reader[self.format](with_langs)

    def _text(self, record: dict[str, Any], where: str) -> str | None:
        text = record.get(self.spec.text_column)
        if text is not None and not isinstance(text, str):
            raise CorpusError(f"{where}: {self.spec.text_column!r} is a {type(text).__name__}, not a string")
        return text

    # A record becomes a Row, or None when its text is empty.
    def _row(self, position: int, record: dict[str, Any], where: str) -> Row | None:
        spec = self.spec
        text = self._text(record, where)
        if text is None or not text.strip():
            self.skipped += 1
            return None
        lang = self.fixed_lang
        if lang is None:
            raw = record.get(spec.lang_column)
            if raw is None:
                raise CorpusError(f"{where}: no language (null {spec.lang_column!r}); fill it in or give --lang")
            lang = self._language(raw, where)
        if self.id_column is None:
            id_ = str(position)
        elif record.get(self.id_column) is None:
            raise CorpusError(f"{where}: null id in column {self.id_column!r}; every row needs an id")
        else:
            id_ = str(record[self.id_column])
        used = {spec.text_column, self.id_column} | ({spec.lang_column} if self.fixed_lang is None else set())
        return Row(position, id_, lang, text, {k: v for k, v in record.items() if k not in used})

    def _language(self, code: Any, where: str) -> str:
        try:
            return normalize_lang(str(code))
        except UnknownLanguageError as e:
            raise CorpusError(f"{where}: {e}") from None

    def _check_columns(self, names: list[str], where: str, with_langs: bool) -> None:
        spec = self.spec
        wanted = [spec.text_column] + ([spec.id_column] if spec.id_column else [])
        for col, flag in zip(wanted, ("--text-column", "--id-column")):
            if col not in names:
                raise CorpusError(f"{where}: no column {col!r} (columns: {', '.join(names) or 'none'}); "
                                  f"name the right one with {flag}")
        if spec.id_column is None and DEFAULT_ID_COLUMN in names:
            self.id_column = DEFAULT_ID_COLUMN
        if with_langs and self.fixed_lang is None and spec.lang_column not in names:
            raise CorpusError(f"{where}: no language column {spec.lang_column!r} (columns: {', '.join(names)}); "
                              "name it with --lang-column or give every row's language with --lang")

    def _parquet(self, with_langs: bool) -> Iterator[tuple[int, dict[str, Any], str]]:
        try:
            f = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as e:
            raise CorpusError(f"{self.path}: not a readable parquet file ({e})") from None
        self._check_columns(f.schema_arrow.names, str(self.path), with_langs)
        text_type = f.schema_arrow.field(self.spec.text_column).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            raise CorpusError(f"{self.path}: column {self.spec.text_column!r} holds {text_type}, not text")
        position = 0
        try:
            for batch in f.iter_batches(batch_size=8192):
                for record in batch.to_pylist():
                    yield position, record, f"{self.path} row {position}"
                    position += 1
        except pa.ArrowException as e:
            raise CorpusError(f"{self.path} near row {position}: unreadable ({e})") from None

    def _jsonl(self, with_langs: bool) -> Iterator[tuple[int, dict[str, Any], str]]:
        position = 0
        for lineno, line in text_lines(self.path):
            if not line.strip():
                continue
            where = f"{self.path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where}: not JSON ({e.msg}); write one JSON object per line") from None
            if not isinstance(record, dict):
                raise CorpusError(f"{where}: a JSON {type(record).__name__}, not an object")
            if "\\u" in line:  # only an escape can make a string that is not valid Unicode
                _check_unicode(record, where)
            if position == 0:
                self._check_columns(list(record), where, with_langs)
            yield position, record, where
            position += 1

    def _tsv(self, with_langs: bool) -> Iterator[tuple[int, dict[str, Any], str]]:
        lines = text_lines(self.path)
        header = next(lines, None)
        if header is None:
            raise CorpusError(f"{self.path}: the file is empty")
        names = header[1].split("\t")
        self._check_columns(names, f"{self.path}:1 (header)", with_langs)
        position = 0
        for lineno, line in lines:
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(names):
                raise CorpusError(f"{self.path}:{lineno}: {len(fields)} tab-separated fields, the header has "
                                  f"{len(names)}; tabs inside text are not allowed in TSV")
            yield position, dict(zip(names, fields)), f"{self.path}:{lineno}"
            position += 1

    def _lines_as_records(self, with_langs: bool) -> Iterator[tuple[int, dict[str, Any], str]]:
        for lineno, line in text_lines(self.path):
            yield lineno - 1, {self.spec.text_column: line}, f"{self.path}:{lineno}"


def _check_unicode(record: dict[str, Any], where: str) -> None:
    for key, value in record.items():
        problem = utf8_problem(key) or utf8_problem(value if isinstance(value, str) else
                                                    json.dumps(value, ensure_ascii=False))
        if problem:
            raise CorpusError(f"{where}: {key!r} is {problem}; fix or drop the escape")
