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
   Each search returns k + 1 neighbours: the margins use the first k, the extra one gives each sentence's margin
   with its best candidate left out, the negatives `emsearch.search.threshold` fits the threshold against.
3. `emsearch.search.margin.mine` (margin, retrieval mode) on the two (D, I); the threshold (by default chosen
   from the margins of the mined pairs, `choose_threshold`; or the model bundle's, or given) keeps the pairs
   scoring at least it; the corpus fit's estimated precision and recall at it are reported either way.
4. Corpus ids and texts from the sentence stores; a sentence pair that occurs twice (the same two texts, e.g. a
   line repeated in the corpus) is written once, with its best score; written under a temporary name, renamed.

Queries go `chunk` rows at a time, so memory holds one chunk of vectors plus the (n, k) results. Each finished
chunk is saved under `OUTPUT.partial/`: rerunning the same job after an interruption reuses them, and the folder is
removed once the output is in place.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from emsearch.atomic import atomic_path, save_npy, write_text_atomic
from emsearch.errors import EmsearchError
from emsearch.search.knn import knn_chunk
from emsearch.search.margin import MinedPairs, check_choice
from emsearch.search.margin import mine as mine_by_margin
from emsearch.search.mine_config import MineConfig
from emsearch.search.threshold import AUTO, MODEL, ThresholdChoice, choose_threshold, null_margins
from emsearch.progress import bar

OUTPUT_FORMATS = ("parquet", "tsv")
COLUMNS = ("src_id", "tgt_id", "score", "src_text", "tgt_text")


@dataclass(frozen=True)
class MineResult:
    output: Path
    written: int  # pairs in the output
    duplicates: int  # pairs dropped as repeats of a written text pair
    src_sentences: int
    tgt_sentences: int
    seconds: float
    choice: ThresholdChoice  # the threshold applied, why, and its estimated precision and recall

    @property
    def threshold(self) -> float | None:
        return self.choice.threshold

    def summary(self) -> dict:
        """What `OUTPUT.json` holds beside the pairs."""
        return {"output": str(self.output), "written": self.written, "duplicates": self.duplicates,
                "src_sentences": self.src_sentences, "tgt_sentences": self.tgt_sentences,
                "seconds": round(self.seconds, 2), **self.choice.as_json()}


def bundle_threshold(cfg: MineConfig, *indexes) -> float | None:
    """The model bundle's mining threshold for the pair (its own, else the shared one), set for the ratio margin
    between vectors centred on their corpus mean: what `--threshold model` applies (an error says why it cannot)
    and what `auto` falls back to where too few pairs are mined to fit (None where it does not apply)."""
    if cfg.threshold not in (AUTO, MODEL):
        return None
    bundle = indexes[0].encoder.mining_threshold(cfg.src, cfg.tgt)
    uncentred = next((index for index in indexes if index.centring != "corpus"), None)
    problem = None
    if bundle is None:
        problem = "the model bundle holds no mining threshold"
    elif cfg.margin != "ratio":
        problem = f"the model's mining threshold is set for the ratio margin, not {cfg.margin}"
    elif uncentred is not None:
        problem = (f"{uncentred.path} compares {_COMPARED[uncentred.centring]}, but the model's mining threshold is "
                   "set on vectors centred on their corpus mean (rebuild with emsearch build-index --centre corpus: "
                   "its embeddings are reused)")
    if problem is not None and cfg.threshold == MODEL:
        raise EmsearchError(f"--threshold model: {problem}; give --threshold X or --threshold auto")
    return None if problem else bundle


_COMPARED = {"none": "uncentred vectors (built without centring)",
             "language": "vectors centred on their language's own mean (--centre language)"}


def job_key(src_index, tgt_index, cfg: MineConfig) -> dict:
    """What decides the kNN results: cached chunks are reused only when all of it matches."""
    def facts(index) -> dict:
        manifest = json.dumps(index.manifest, sort_keys=True, default=str).encode()
        return {"path": str(Path(index.path).resolve()), "model_id": index.model_id, "ntotal": index.ntotal,
                "manifest_sha256": hashlib.sha256(manifest).hexdigest()}

    return {"src_index": facts(src_index), "tgt_index": facts(tgt_index), "src": cfg.src, "tgt": cfg.tgt,
            "neighbours": cfg.k + 1, "nprobe": cfg.nprobe, "chunk": cfg.chunk}


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


def chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def local_searcher(src_index, tgt_index, x_rows: np.ndarray, y_rows: np.ndarray, cfg: MineConfig):
    """`searcher(direction, bounds)`: the (D, I) of each chunk of query rows, in order, searched in this process."""
    sides = {"fwd": (src_index, x_rows, tgt_index, cfg.tgt, y_rows), "bwd": (tgt_index, y_rows, src_index, cfg.src,
                                                                           x_rows)}

    def searcher(direction: str, bounds: list[tuple[int, int]]):
        query, query_rows, base, base_lang, base_rows = sides[direction]
        for start, stop in bounds:
            yield knn_chunk(query.embeddings(query_rows[start:stop]), base, base_lang, base_rows, cfg)

    return searcher


def knn_direction(direction: str, n: int, searcher, cfg: MineConfig, work_dir: Path | None,
                  advance) -> tuple[np.ndarray, np.ndarray]:
    """kNN of the n query rows of `direction` (fwd: source → target, bwd: back), chunk by chunk; chunks cached in
    `work_dir` are read back, the others searched by `searcher` and cached."""
    D = np.zeros((n, cfg.k + 1), dtype=np.float32)
    I = np.full((n, cfg.k + 1), -1, dtype=np.int64)
    bounds = chunk_bounds(n, cfg.chunk)
    todo = []
    for c, (start, stop) in enumerate(bounds):
        # I is written last: its presence means the chunk is whole
        if work_dir is not None and (work_dir / f"{direction}-{c:06d}.I.npy").is_file():
            D[start:stop] = np.load(work_dir / f"{direction}-{c:06d}.D.npy")
            I[start:stop] = np.load(work_dir / f"{direction}-{c:06d}.I.npy")
            advance(stop - start)
        else:
            todo.append(c)
    for c, (Dc, Ic) in zip(todo, searcher(direction, [bounds[c] for c in todo])):
        start, stop = bounds[c]
        D[start:stop], I[start:stop] = Dc, Ic
        if work_dir is not None:
            save_npy(work_dir / f"{direction}-{c:06d}.D.npy", Dc)
            save_npy(work_dir / f"{direction}-{c:06d}.I.npy", Ic)
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
                 console: Console | None = None) -> tuple[MinedPairs, int, int, ThresholdChoice]:
    """Mine `cfg.src` sentences of src_index against `cfg.tgt` sentences of tgt_index (they may be one index).

    Returns the pairs (global rows: src rows of src_index, tgt rows of tgt_index) at the threshold `cfg` asks for,
    both side sizes and the threshold's choice.
    """
    if src_index is tgt_index and cfg.src == cfg.tgt:
        raise EmsearchError(f"source and target are both {cfg.src}: mine between two languages")
    if src_index.model_id != tgt_index.model_id:
        raise EmsearchError("the two indexes were built with different models; rebuild one with the other's model")
    bundle = bundle_threshold(cfg, src_index, tgt_index)
    x_rows = language_rows(src_index, cfg.src, "source")
    y_rows = language_rows(tgt_index, cfg.tgt, "target")
    if work_dir is not None:
        work_dir = open_work_dir(work_dir, job_key(src_index, tgt_index, cfg))
    if cfg.ray:
        from emsearch.search.mine_ray import RaySearcher

        searcher = RaySearcher(src_index, tgt_index, x_rows, y_rows, cfg)
    else:
        searcher = local_searcher(src_index, tgt_index, x_rows, y_rows, cfg)
    try:
        with bar(console, f"kNN {cfg.src} → {cfg.tgt}", len(x_rows)) as progress:
            D_xy, I_xy = knn_direction("fwd", len(x_rows), searcher, cfg, work_dir, progress.advance)
        with bar(console, f"kNN {cfg.tgt} → {cfg.src}", len(y_rows)) as progress:
            D_yx, I_yx = knn_direction("bwd", len(y_rows), searcher, cfg, work_dir, progress.advance)
    finally:
        if cfg.ray:
            searcher.close()
    k = cfg.k
    pairs = mine_by_margin(D_xy[:, :k], I_xy[:, :k], D_yx[:, :k], I_yx[:, :k], margin=cfg.margin, mode=cfg.mode)
    null = null_margins(D_xy, I_xy, D_yx, I_yx, cfg.margin)
    if cfg.threshold == AUTO:
        choice = choose_threshold(pairs.score, null, min_precision=cfg.min_precision, fallback=bundle)
    elif cfg.threshold == MODEL:
        choice = choose_threshold(pairs.score, null, threshold=bundle, how="from the model bundle")
    else:
        choice = choose_threshold(pairs.score, null, threshold=cfg.threshold, how="as given")
    if choice.threshold is not None:  # pairs are best first: those at or above the threshold are a prefix
        pairs = pairs.prefix(int((pairs.score >= choice.threshold).sum()))
    return MinedPairs(x_rows[pairs.src], y_rows[pairs.tgt], pairs.score), len(x_rows), len(y_rows), choice


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
    work_dir = output.with_name(output.name + ".partial")
    pairs, nx, ny, choice = mine_indexes(src_index, tgt_index, cfg, work_dir=work_dir, console=console)
    metadata = {"config": asdict(cfg), "model_id": src_index.model_id, "threshold": choice.as_json(),
                "src_index": str(src_index.path), "tgt_index": str(tgt_index.path)}
    written, duplicates = write_pairs(pairs, src_index, tgt_index, output, fmt, metadata=metadata, console=console)
    result = MineResult(output, written, duplicates, nx, ny, time.perf_counter() - t0, choice)
    write_text_atomic(summary_path(output), json.dumps(result.summary(), indent=1) + "\n")
    shutil.rmtree(work_dir, ignore_errors=True)
    return result


def summary_path(output: Path) -> Path:
    """`OUTPUT.json`: the run's facts (threshold, why, estimated precision and recall, counts) beside the pairs."""
    return output.with_name(output.name + ".json")


def mine(src: str, tgt: str, output: str | Path, *, index: str | Path | None = None,
         src_index: str | Path | None = None, tgt_index: str | Path | None = None, format: str | None = None,
         threshold: float | str = AUTO, min_precision: float | None = None, k: int = 4, margin: str = "ratio",
         mode: str = "max", nprobe: int | None = None, chunk: int = 8192, model: str | Path | None = None,
         ray: bool = False, ray_address: str | None = None, workers: int = 0,
         console: Console | None = None) -> MineResult:
    """Mine the translation pairs between two languages of built indexes into one file: `emsearch mine`.

    The two sides live in one `index` (a path, a name under indexes/, or None for the only index there), or in
    `src_index` and `tgt_index`, which must hold vectors of the same model. `threshold` "auto" (the default) chooses
    it from the corpus's margins (`emsearch.search.threshold`): F1-best, or the lowest reaching `min_precision`;
    "model" applies the model bundle's mining threshold for the pair (set for the ratio margin); or a number. `ray`
    searches the kNN chunks on Ray actors, each opening the indexes from their paths (shared by the nodes).
    `format` defaults to tsv for a .tsv output, else parquet.
    """
    from emsearch.index.reader import Index

    if index is not None and (src_index or tgt_index):
        raise EmsearchError("give index, or src_index with tgt_index, not both")
    if (src_index is None) != (tgt_index is None):
        raise EmsearchError("src_index and tgt_index go together; for one index holding both languages use index")
    output = Path(output)
    fmt = format or ("tsv" if output.suffix.lower() == ".tsv" else "parquet")
    check_choice(fmt, OUTPUT_FORMATS, "output format")
    # a bad option fails before the indexes open
    cfg = MineConfig(src, tgt, k=k, margin=margin, mode=mode, nprobe=nprobe, chunk=chunk, threshold=threshold,
                     min_precision=min_precision, ray=ray or ray_address is not None, ray_address=ray_address,
                     workers=workers, model=None if model is None else str(model))
    groups = [] if cfg.ray else None  # with Ray the workers search FAISS: the driver loads none of it
    with ExitStack() as stack:
        a = stack.enter_context(Index.open(index or src_index, model=model, groups=groups))
        if src_index is None or Path(src_index).resolve() == Path(tgt_index).resolve():
            b = a
        else:  # the same model, or an IndexOpenError
            b = stack.enter_context(Index.open(tgt_index, a.encoder, groups=groups))
        return mine_to_file(a, b, cfg, output, fmt, console=console)

