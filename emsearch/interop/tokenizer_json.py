"""A SentencePiece Unigram model as a Hugging Face `tokenizers` JSON that gives the same pieces.

    spec = tokenizer_spec(read_model("tokenizer.model"), max_len=256)   # a dict; json.dumps → tokenizer.json

What SentencePiece does, and the JSON part that does the same:
- the normaliser's precompiled character map (NFKC, case folding, control characters dropped): `Precompiled`.
  SentencePiece applies it by longest match along the text; `tokenizers` applies it per grapheme and, for a short
  grapheme, keeps only the mapping of its first character (an "E" + U+0301 becomes "e", the accent lost), and
  never joins the characters of a long one (a Bengali vowel sign written in two parts). So three steps go first:
  NFC does the joining the map would have done (decomposed sequences are the map's only multi-character keys),
  a separator (a control character the map deletes) stops NFC from reordering marks the map keeps in their
  order, and the same separator before every remaining mark makes each character its own grapheme.
- whitespace: runs collapsed, ends trimmed, a dummy "▁" prefix, spaces as "▁": `Prepend` / `Replace` steps;
- the Unigram pieces and their scores, unknown characters as `<0xNN>` byte pieces: `Unigram` with byte fallback.
  Control, unknown, unused and byte pieces never match text in SentencePiece; here they keep their ids, the first
  three renamed behind two markers (no text holds one), the byte pieces under the names byte fallback needs, at
  the lowest score of a normal piece (a lower one would change the score of unknown characters, which the
  joined scripts of a vocabulary meet often). So a byte piece's name written literally in the text, with digits
  only ("<0x41>": the normaliser lowercases "<0xE0>" to a string no piece has), may come out as that byte.
- EOS on every sentence (emsearch's `Tokenizer`): model2vec and sentence-transformers encode without special
  tokens, so no post-processor would run. Instead the normaliser puts a marker first (a control character that the
  character map deletes, so no text carries it) and the marker is a piece of its own, id `len(pieces)`, whose row
  the export makes the EOS row. Position does not matter to a mean. Truncation to `max_len` tokens then keeps
  the marker and the first `max_len - 1` pieces, as emsearch does. A text that normalises to nothing (the empty
  string, control characters alone) gets no marker, so it has no tokens.
The protobuf is read by hand (field numbers of sentencepiece_model.proto), so no protobuf package is needed.
"""

from __future__ import annotations

import base64
import struct
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from emsearch.errors import EmsearchError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # SentencePiece{type}
UNIGRAM = 1  # TrainerSpec{model_type}
MARKERS = [chr(c) for c in (*range(1, 9), 0x0E, 0x0F, 0x7F)]  # candidates: the first one the normaliser drops


class TokenizerExportError(EmsearchError):
    """A SentencePiece model this converter cannot reproduce exactly."""


@dataclass(frozen=True)
class SentencePieceModel:
    pieces: list[tuple[str, float, int]]  # (piece, score, type) in id order
    model_type: int
    byte_fallback: bool
    unk_id: int
    eos_id: int
    treat_whitespace_as_suffix: bool
    charsmap: bytes
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool
    escape_whitespaces: bool


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message; varints as ints, 32-bit and length-delimited
    values as bytes (64-bit values are skipped, the model has none we read)."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n

    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 1:
            i += 8
        elif wire == 2:
            size = varint()
            out.append((field, data[i : i + size]))
            i += size
        elif wire == 5:
            out.append((field, data[i : i + 4]))
            i += 4
        else:
            raise TokenizerExportError(f"unreadable SentencePiece model (wire type {wire}): pass a tokenizer.model")
    return out


def read_model(path: str | Path) -> SentencePieceModel:
    """The parts of a SentencePiece `ModelProto` that decide segmentation."""
    top = _fields(Path(path).read_bytes())
    pieces = []
    for piece in (v for f, v in top if f == 1):
        p = dict(_fields(piece))
        pieces.append((p.get(1, b"").decode("utf-8"), struct.unpack("<f", p.get(2, b"\0\0\0\0"))[0], p.get(3, NORMAL)))
    trainer = dict(_fields(next((v for f, v in top if f == 2), b"")))
    normalizer = dict(_fields(next((v for f, v in top if f == 3), b"")))
    return SentencePieceModel(
        pieces=pieces, model_type=trainer.get(3, UNIGRAM), byte_fallback=bool(trainer.get(35, 0)),
        unk_id=trainer.get(40, 0), eos_id=trainer.get(42, 2), treat_whitespace_as_suffix=bool(trainer.get(24, 0)),
        charsmap=normalizer.get(2, b""), add_dummy_prefix=bool(normalizer.get(3, 1)),
        remove_extra_whitespaces=bool(normalizer.get(4, 1)), escape_whitespaces=bool(normalizer.get(5, 1)))


def _marker(path: str | Path) -> str:
    """A character the model's normaliser deletes: text can never hold it after normalisation. Checks too that
    the normaliser composes, as the NFC step assumes."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))
    if sp.normalize("e\u0301") != sp.normalize("\u00e9"):
        raise TokenizerExportError(f"{path}: its normaliser does not compose (NFC); only NFKC-based normalisers "
                                   "(nmt_nfkc, nmt_nfkc_cf) export")
    for c in MARKERS:
        if sp.normalize(c + "a") == sp.normalize("a"):
            return c
    raise TokenizerExportError(f"{path}: its normaliser keeps control characters, so the EOS marker could "
                               "collide with text; export a model trained with an nmt_nfkc* normaliser")


def _char_class(cps: list[int]) -> str:
    runs, start = [], cps[0]
    for prev, cp in zip(cps, cps[1:] + [None]):
        if cp != prev + 1:
            runs.append(f"\\x{{{start:X}}}" + (f"-\\x{{{prev:X}}}" if prev > start else ""))
            start = cp
    return "[" + "".join(runs) + "]"


@lru_cache(maxsize=1)
def _reorder_guard() -> str:
    """A regex matching the places where NFC would reorder marks: after a character whose decomposition ends in a
    mark of combining class a, before a mark of a lower class b > 0."""
    marks, ends = defaultdict(list), defaultdict(list)
    for cp in range(0x110000):
        if ccc := unicodedata.combining(chr(cp)):
            marks[ccc].append(cp)
        if ccc := unicodedata.combining(unicodedata.normalize("NFD", chr(cp))[-1]):
            ends[ccc].append(cp)
    classes = sorted(marks)
    pairs = "|".join(f"(?<={_char_class(ends[a])})(?={_char_class([c for b in classes if b < a for c in marks[b]])})"
                     for a in classes[1:])
    return f"(?={_char_class(sorted(c for cps in marks.values() for c in cps))})(?:{pairs})"  # cheap test first


def _replace(pattern: str, content: str, regex: bool = False) -> dict:
    return {"type": "Replace", "pattern": {"Regex" if regex else "String": pattern}, "content": content}


def tokenizer_spec(path: str | Path, max_len: int) -> dict:
    """The `tokenizer.json` (as a dict) of the SentencePiece model at `path`; ids 0..n-1 are its pieces' ids,
    id n the EOS marker (see the module docstring). Sentences are truncated to `max_len` tokens."""
    model = read_model(path)
    if model.model_type != UNIGRAM:
        raise TokenizerExportError(f"{path} is not a Unigram SentencePiece model; only Unigram models export")
    if model.treat_whitespace_as_suffix or not model.escape_whitespaces or not model.charsmap:
        raise TokenizerExportError(f"{path}: only models with the default whitespace handling and a precompiled "
                                   "normaliser (nmt_nfkc, nmt_nfkc_cf) export")
    marker = _marker(path)
    steps = [_replace(_reorder_guard(), marker, regex=True), {"type": "NFC"},
             _replace("(?<=[\\s\\S])(?=\\p{M})", marker, regex=True),
             {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(model.charsmap).decode("ascii")}]
    normal = [score for _, score, kind in model.pieces if kind == NORMAL]
    # `tokenizers` scores an unknown character (then cut into byte pieces) 10 below the lowest score of the whole
    # vocabulary, SentencePiece 10 below the lowest of its normal pieces: no piece may score lower than those.
    lowest, highest = min(normal), max(normal)
    vocab = []
    for piece, score, kind in model.pieces:
        if kind == USER_DEFINED:  # matched before anything else, as SentencePiece's lattice scores them
            score = len(piece) * highest - 0.1
        elif kind == BYTE:
            score = lowest
        elif kind != NORMAL:
            piece, score = marker * 2 + piece, lowest
        vocab.append([piece, score])
    vocab.append([marker, 0.0])
    spaced = model.add_dummy_prefix or model.remove_extra_whitespaces  # a space after the marker, to collapse
    steps.append({"type": "Prepend", "prepend": marker + " " if spaced else marker})
    if model.remove_extra_whitespaces:
        steps += [_replace(" {2,}", " ", regex=True), _replace(" $", "", regex=True)]
        if not model.add_dummy_prefix:
            steps.append(_replace(marker + " ", marker))
    steps.append(_replace(" ", "▁"))
    return {
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": max_len, "strategy": "LongestFirst", "stride": 0},
        "padding": None,
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": steps},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            _replace("▁", " "), {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "Unigram", "unk_id": model.unk_id, "vocab": vocab, "byte_fallback": model.byte_fallback},
    }
