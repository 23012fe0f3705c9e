"""Mining bitext out of built indexes: kNN both ways over the whole target side, margin scores, pairs written out.

    emsearch mine --src de --tgt en --index indexes/news --output pairs.parquet

1. For each source-language sentence, its k nearest target-language sentences: the stored vectors of the source
   rows, as their index compares them (`Index.embeddings`: centred on its corpus mean, or in an index centred per
   language on the source language's mean), are searched against all shards of the target index at once
   (`Index.search_vectors(.., langs=[tgt])`),
   never shard by shard — a per-shard kNN sees only part of the neighbourhood, under-estimates the mean
   similarity and so inflates every margin.
2. The same from the target side back to the source language.
   The index re-scores its IVF-PQ candidates with the exact cosine of the stored fp16 vectors, so the margins
   carry no PQ approximation error: only which sentences make the top k is approximate.
3. `emsearch.search.mining.mine` (margin, retrieval mode, threshold) on the two (D, I).
4. Corpus ids and texts from the sentence stores; a sentence pair that occurs twice (the same two texts, e.g. a
   line repeated in the corpus) is written once, with its best score; written under a temporary name, renamed.

Queries go `chunk` rows at a time, so memory holds one chunk of vectors plus the (n, k) results. Each finished
chunk is saved under `OUTPUT.partial/`: rerunning the same job after an interruption reuses them, and the folder is
removed once the output is in place.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from emsearch.atomic import atomic_path, save_npy, write_text_atomic
from emsearch.errors import EmsearchError
from emsearch.languages import normalize_lang
from emsearch.search import mining
from emsearch.search.mining import MARGINS, MODES, MinedPairs, check_choice
from emsearch.progress import bar

OUTPUT_FORMATS = ("parquet", "tsv")
COLUMNS = ("src_id", "tgt_id", "score", "src_text", "tgt_text")


@dataclass(frozen=True)
class MineConfig:
    src: str  # language codes, any accepted form; normalised on use
    tgt: str
    k: int = 4
    margin: str = "ratio"
    mode: str = "max"
    threshold: float | None = None  # None: keep every mined pair
    nprobe: int | None = None  # IVF lists visited per query; None: the index's calibrated default
    chunk: int = 8192  # query rows per search call

    def checked(self) -> MineConfig:
        check_choice(self.margin, MARGINS, "margin")
        check_choice(self.mode, MODES, "retrieval mode")
        if not 1 <= self.k <= 100:
            raise EmsearchError(f"k must be from 1 to 100 (4 is usual for margins), got {self.k}")
        if self.chunk < 1:
            raise EmsearchError(f"chunk must be positive, got {self.chunk}")
        if self.nprobe is not None and self.nprobe < 1:
            raise EmsearchError(f"nprobe must be positive, got {self.nprobe}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise EmsearchError(f"the threshold must be a finite number, got {self.threshold}")
        return MineConfig(**{**asdict(self), "src": normalize_lang(self.src), "tgt": normalize_lang(self.tgt)})


@dataclass(frozen=True)
class MineResult:
    output: Path
    written: int  # pairs in the output
    duplicates: int  # pairs dropped as repeats of a written text pair
    src_sentences: int
    tgt_sentences: int
    seconds: float
    threshold: float | None  # the threshold applied (None: every mined pair kept)


def default_threshold(threshold: float | None, cfg: MineConfig, *indexes) -> float | None:
    """`threshold` if given; else the model bundle's mining threshold for the pair, which is calibrated for the
    ratio margin between centred vectors (an index built with centring)."""
    bundle = indexes[0].encoder.mining_threshold(cfg.src, cfg.tgt)
    if threshold is not None or cfg.margin != "ratio" or bundle is None:
        return threshold
    for index in indexes:
        if index.centring != "corpus":
            raise EmsearchError(f"{index.path} compares {_COMPARED[index.centring]}, but the model's mining threshold "
                                "is set on vectors centred on their corpus mean: give --threshold, or rebuild the "
                                "index with emsearch build-index --centre corpus (its embeddings are reused)")
    return bundle


_COMPARED = {"none": "uncentred vectors (built without centring)",
             "language": "vectors centred on their language's own mean (--centre language)"}


def job_key(src_index, tgt_index, cfg: MineConfig) -> dict:
    """What decides the kNN results: cached chunks are reused only when all of it matches."""
    def facts(index) -> dict:
        manifest = json.dumps(index.manifest, sort_keys=True, default=str).encode()
        return {"path": str(Path(index.path).resolve()), "model_id": index.model_id, "ntotal": index.ntotal,
                "manifest_sha256": hashlib.sha256(manifest).hexdigest()}

    return {"src_index": facts(src_index), "tgt_index": facts(tgt_index), "src": cfg.src, "tgt": cfg.tgt,
            "k": cfg.k, "nprobe": cfg.nprobe, "chunk": cfg.chunk}


def open_work_dir(work_dir: Path, key: dict) -> Path:
    """The chunk cache of this job: kept if it belongs to the same job, emptied otherwise."""
    marker = work_dir / "job.json"
    if work_dir.is_dir():
        try:
            same = json.loads(marker.read_text(encoding="utf-8")) == key
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        write_text_atomic(marker, json.dumps(key, indent=1) + "\n")
    return work_dir


def knn_chunk(xq: np.ndarray, base, lang: str, base_rows: np.ndarray, cfg: MineConfig) -> tuple[np.ndarray, np.ndarray]:
    """k nearest `lang` rows of `base` for the vectors xq: (D, I) with I a position in base_rows, -1 for none."""
    D, I = base.search_vectors(xq, cfg.k, langs=[lang], nprobe=cfg.nprobe)  # (c, k) global rows of `base`
    valid = I >= 0
    local = np.searchsorted(base_rows, np.where(valid, I, 0))
    local = np.minimum(local, len(base_rows) - 1)
    if not np.array_equal(base_rows[local][valid], I[valid]):
        raise EmsearchError(f"{base.path} returned rows outside language {lang}: the index is damaged; rebuild it")
    return np.where(valid, D, 0).astype(np.float32), np.where(valid, local, -1).astype(np.int64)


def knn_direction(name: str, query, query_rows: np.ndarray, base, base_lang: str, base_rows: np.ndarray,
                  cfg: MineConfig, work_dir: Path | None, advance) -> tuple[np.ndarray, np.ndarray]:
    """kNN of every `query_rows` vector of `query` among `base_lang` rows of `base`, chunk by chunk."""
    D = np.zeros((len(query_rows), cfg.k), dtype=np.float32)
    I = np.full((len(query_rows), cfg.k), -1, dtype=np.int64)
    for n, start in enumerate(range(0, len(query_rows), cfg.chunk)):
        stop = min(start + cfg.chunk, len(query_rows))
        files = None if work_dir is None else (work_dir / f"{name}-{n:06d}.D.npy", work_dir / f"{name}-{n:06d}.I.npy")
        if files is not None and files[1].is_file():  # I is written last: its presence means the chunk is whole
            D[start:stop], I[start:stop] = np.load(files[0]), np.load(files[1])
        else:
            xq = query.embeddings(query_rows[start:stop])
            D[start:stop], I[start:stop] = knn_chunk(xq, base, base_lang, base_rows, cfg)
            if files is not None:
                save_npy(files[0], D[start:stop])
                save_npy(files[1], I[start:stop])
        advance(stop - start)
    return D, I


def language_rows(index, lang: str, side: str) -> np.ndarray:
    try:
        rows = index.rows_of_lang(lang)
    except ValueError:
        have = ", ".join(sorted(index.languages()))
        raise EmsearchError(f"the {side} index {index.path} has no {lang} sentences (it holds {have})") from None
    return np.asarray(rows, dtype=np.int64)


def mine_indexes(src_index, tgt_index, cfg: MineConfig, *, work_dir: Path | None = None,
                 console: Console | None = None) -> tuple[MinedPairs, int, int]:
    """Mine `cfg.src` sentences of src_index against `cfg.tgt` sentences of tgt_index (they may be one index).

    Returns the pairs as global rows (src rows of src_index, tgt rows of tgt_index) and both side sizes.
    """
    cfg = cfg.checked()
    if src_index is tgt_index and cfg.src == cfg.tgt:
        raise EmsearchError(f"source and target are both {cfg.src}: mine between two languages")
    if src_index.model_id != tgt_index.model_id:
        raise EmsearchError("the two indexes were built with different models; rebuild one with the other's model")
    x_rows = language_rows(src_index, cfg.src, "source")
    y_rows = language_rows(tgt_index, cfg.tgt, "target")
    if work_dir is not None:
        work_dir = open_work_dir(work_dir, job_key(src_index, tgt_index, cfg))
    with bar(console, f"kNN {cfg.src} → {cfg.tgt}", len(x_rows)) as progress:
        D_xy, I_xy = knn_direction("fwd", src_index, x_rows, tgt_index, cfg.tgt, y_rows, cfg, work_dir,
                                   progress.advance)
    with bar(console, f"kNN {cfg.tgt} → {cfg.src}", len(y_rows)) as progress:
        D_yx, I_yx = knn_direction("bwd", tgt_index, y_rows, src_index, cfg.src, x_rows, cfg, work_dir,
                                   progress.advance)
    pairs = mining.mine(D_xy, I_xy, D_yx, I_yx, margin=cfg.margin, mode=cfg.mode, threshold=cfg.threshold)
    return MinedPairs(x_rows[pairs.src], y_rows[pairs.tgt], pairs.score), len(x_rows), len(y_rows)


def one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_pairs(pairs: MinedPairs, src_index, tgt_index, output: Path, fmt: str, *, metadata: dict | None = None,
                batch: int = 50_000, console: Console | None = None) -> tuple[int, int]:
    """Write pairs (best first) with ids and texts; returns (written, duplicate text pairs dropped)."""
    check_choice(fmt, OUTPUT_FORMATS, "output format")
    output = Path(output)
    schema = pa.schema([("src_id", pa.string()), ("tgt_id", pa.string()), ("score", pa.float32()),
                        ("src_text", pa.string()), ("tgt_text", pa.string())],
                       metadata={"emsearch": json.dumps(metadata or {})})
    seen: set[bytes] = set()
    written = duplicates = 0
    with atomic_path(output) as tmp:
        with ExitStack() as stack:
            progress = stack.enter_context(bar(console, "writing pairs", len(pairs)))
            if fmt == "parquet":
                writer = stack.enter_context(pq.ParquetWriter(tmp, schema, compression="zstd"))

                def write(cols: dict[str, list]) -> None:
                    writer.write_table(pa.table(cols, schema=schema))
            else:
                tsv = stack.enter_context(open(tmp, "w", encoding="utf-8", newline="\n"))
                tsv.write("\t".join(COLUMNS) + "\n")

                def write(cols: dict[str, list]) -> None:
                    tsv.writelines(f"{one_line(a)}\t{one_line(b)}\t{c:.6f}\t{one_line(d)}\t{one_line(e)}\n"
                                   for a, b, c, d, e in zip(*(cols[c] for c in COLUMNS)))

            for start in range(0, len(pairs), batch):
                stop = min(start + batch, len(pairs))
                src = src_index.records(pairs.src[start:stop].tolist())
                tgt = tgt_index.records(pairs.tgt[start:stop].tolist())
                cols: dict[str, list] = {c: [] for c in COLUMNS}
                for s, t, score in zip(src, tgt, pairs.score[start:stop].tolist()):
                    key = hashlib.blake2b(f"{s.text}\0{t.text}".encode("utf-8"), digest_size=16).digest()
                    if key in seen:
                        duplicates += 1
                        continue
                    seen.add(key)
                    for c, v in zip(COLUMNS, (s.id, t.id, score, s.text, t.text)):
                        cols[c].append(v)
                written += len(cols["score"])
                write(cols)
                progress.advance(stop - start)
    return written, duplicates


def mine_to_file(src_index, tgt_index, cfg: MineConfig, output: str | Path, fmt: str = "parquet", *,
                 console: Console | None = None) -> MineResult:
    """`mine_indexes`, then `write_pairs`; chunk results are cached in OUTPUT.partial/ until the output is written."""
    t0 = time.perf_counter()
    output = Path(output)
    check_choice(fmt, OUTPUT_FORMATS, "output format")
    if not output.parent.is_dir():
        raise EmsearchError(f"{output.parent}: no such directory for the output")
    if output.is_dir():
        raise EmsearchError(f"{output} is a directory: give a file name for the pairs")
    cfg = cfg.checked()
    work_dir = output.with_name(output.name + ".partial")
    pairs, nx, ny = mine_indexes(src_index, tgt_index, cfg, work_dir=work_dir, console=console)
    metadata = {"config": asdict(cfg), "model_id": src_index.model_id,
                "src_index": str(src_index.path), "tgt_index": str(tgt_index.path)}
    written, duplicates = write_pairs(pairs, src_index, tgt_index, output, fmt, metadata=metadata, console=console)
    shutil.rmtree(work_dir, ignore_errors=True)
    return MineResult(output, written, duplicates, nx, ny, time.perf_counter() - t0, cfg.threshold)


def mine(src: str, tgt: str, output: str | Path, *, index: str | Path | None = None,
         src_index: str | Path | None = None, tgt_index: str | Path | None = None, format: str | None = None,
         threshold: float | None = None, k: int = 4, margin: str = "ratio", mode: str = "max",
         nprobe: int | None = None, chunk: int = 8192, model: str | Path | None = None,
         console: Console | None = None) -> MineResult:
    """Mine the translation pairs between two languages of built indexes into one file: `emsearch mine`.

    The two sides live in one `index` (a path, a name under indexes/, or None for the only index there), or in
    `src_index` and `tgt_index`, which must hold vectors of the same model. `threshold` defaults to the model
    bundle's mining threshold for the pair (set for the ratio margin), else every mined pair is kept; `format`
    defaults to tsv for a .tsv output, else parquet.
    """
    from emsearch.index.reader import Index

    if index is not None and (src_index or tgt_index):
        raise EmsearchError("give index, or src_index with tgt_index, not both")
    if (src_index is None) != (tgt_index is None):
        raise EmsearchError("src_index and tgt_index go together; for one index holding both languages use index")
    output = Path(output)
    fmt = format or ("tsv" if output.suffix.lower() == ".tsv" else "parquet")
    check_choice(fmt, OUTPUT_FORMATS, "output format")
    cfg = MineConfig(src, tgt, k=k, margin=margin, mode=mode, nprobe=nprobe, chunk=chunk,
                     threshold=threshold).checked()  # a bad option fails before the indexes open
    with ExitStack() as stack:
        a = stack.enter_context(Index.open(index or src_index, model=model))
        if src_index is None or Path(src_index).resolve() == Path(tgt_index).resolve():
            b = a
        else:  # the same model, or an IndexOpenError
            b = stack.enter_context(Index.open(tgt_index, a.encoder))
        cfg = replace(cfg, threshold=default_threshold(threshold, cfg, a, b))
        return mine_to_file(a, b, cfg, output, fmt, console=console)

