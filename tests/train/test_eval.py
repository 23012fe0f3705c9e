"""Evaluation: BUCC-style mining F1 with its best threshold, Tatoeba-style paired files, and the eval CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli, synthetic_pairs
from emsearch.encoder import Encoder
from emsearch.evaluate import paired_accuracy, tatoeba_accuracy
from emsearch.search.bucc import BuccSet, best_f1, bucc, point_at, read_bucc
from emsearch.search.margin import MinedPairs


def write_bucc(folder: Path, n_gold: int = 120, n_noise: int = 60) -> Path:
    """A mining task in the dev layout: gold pairs hidden among one-sided distractors, ids in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    eng, other = synthetic_pairs(n_gold, seed=11)
    noise_eng, _ = synthetic_pairs(n_noise, seed=12)
    _, noise_other = synthetic_pairs(n_noise, seed=13)
    rng = np.random.default_rng(0)
    src = other + noise_other
    tgt = eng + noise_eng
    src_order, tgt_order = rng.permutation(len(src)), rng.permutation(len(tgt))
    src_id = {int(i): f"xx-{pos:06d}" for pos, i in enumerate(src_order)}
    tgt_id = {int(i): f"en-{pos:06d}" for pos, i in enumerate(tgt_order)}
    (folder / "xx-en.xx.tsv").write_text("".join(f"{src_id[i]}\t{src[i]}\n" for i in src_order))
    (folder / "xx-en.en.tsv").write_text("".join(f"{tgt_id[i]}\t{tgt[i]}\n" for i in tgt_order))
    (folder / "xx-en.gold.tsv").write_text("".join(f"{src_id[i]}\t{tgt_id[i]}\n" for i in range(n_gold)))
    return folder


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return Encoder.load(tiny_model, device="cpu")


def toy_set() -> BuccSet:
    return BuccSet("a-b", ["a0", "a1", "a2", "a3"], [""] * 4, ["b0", "b1", "b2", "b3"], [""] * 4,
                   frozenset({("a0", "b0"), ("a1", "b1"), ("a2", "b2")}))


def test_best_f1_picks_the_cut_with_highest_f1():
    # correct, correct, wrong, correct, wrong (best first)
    pairs = MinedPairs(np.array([0, 1, 3, 2, 3]), np.array([0, 1, 0, 2, 3]),
                  np.array([1.3, 1.2, 1.1, 1.05, 1.0], dtype=np.float32))
    best = best_f1(toy_set(), pairs)
    # top-2: P 1, R 2/3, F1 .8; top-4: P 3/4, R 1, F1 6/7 ≈ .857 → best
    assert best.mined == 4 and best.threshold == pytest.approx(1.05)
    assert best.precision == pytest.approx(0.75) and best.recall == 1.0 and best.f1 == pytest.approx(6 / 7)
    at = point_at(toy_set(), pairs, 1.15)
    assert (at.mined, at.precision, at.recall) == (2, 1.0, pytest.approx(2 / 3))


def test_best_f1_never_cuts_inside_a_tie():
    # the wrong pair ties with the first correct one: a threshold keeps both or neither
    pairs = MinedPairs(np.array([3, 0]), np.array([3, 0]), np.array([1.2, 1.2], dtype=np.float32))
    best = best_f1(toy_set(), pairs)
    assert best.mined == 2 and best.precision == 0.5


def test_bucc_recovers_gold_pairs(encoder, tmp_path):
    folder = write_bucc(tmp_path / "bucc")
    report = bucc(encoder, folder, "xx-en")
    assert report.gold == 120 and report.candidates > 0
    assert report.best.f1 > 0.6, report  # the tiny model retrieves ~85% top-1; chance F1 is ~0
    assert report.best.precision > 0.6 and report.best.recall > 0.6
    assert (report.best_threshold, report.f1) == (report.best.threshold, report.best.f1)
    # cutting at the reported threshold reproduces the reported quality; a higher one keeps fewer pairs
    assert report.at(report.best_threshold) == report.best
    assert report.prf_at(report.best_threshold) == (report.precision, report.recall, report.f1)
    assert report.at(report.best_threshold + 1e-3).mined < report.best.mined
    assert report.f1_at(1e9) == 0.0
    # other scoring is honoured: fwd keeps each source sentence's best target (180 sources, one candidate each),
    # and the absolute margin's threshold is a plain cosine
    other = bucc(encoder, folder, "xx-en", margin="absolute", mode="fwd")
    assert (other.margin, other.mode, other.candidates) == ("absolute", "fwd", 180)
    assert other.best.f1 > 0.6 and other.best.threshold <= 1.0


def test_bucc_scores_are_those_of_mining_an_index_of_both_files(tiny_model, encoder, tmp_path):
    """The dev threshold becomes the model's `emsearch mine` default: both must score pairs alike (centred on
    the mean of both sides, as an index holding them)."""
    from emsearch.index import Index
    from emsearch.index.build import BuildConfig, build_index
    from emsearch.search.mine import MineConfig, mine_indexes

    folder = write_bucc(tmp_path / "bucc")
    data = read_bucc(folder, "xx-en")
    pq.write_table(pa.table({"id": data.src_ids + data.tgt_ids,
                             "lang": ["deu"] * len(data.src_ids) + ["eng"] * len(data.tgt_ids),
                             "text": data.src_texts + data.tgt_texts}), tmp_path / "both.parquet")
    build_index(BuildConfig(input=str(tmp_path / "both.parquet"), out=str(tmp_path / "index"), model=str(tiny_model),
                            id_column="id"))
    with Index.open(tmp_path / "index") as index:
        mined, _, _, _ = mine_indexes(index, index, MineConfig("deu", "eng"))
    report = bucc(encoder, folder, "xx-en")
    np.testing.assert_allclose(mined.score, report.pairs.score, atol=2e-3)
    uncentred = bucc(encoder, folder, "xx-en", centre=False)
    centred_score = dict(zip(zip(report.pairs.src, report.pairs.tgt), report.pairs.score))
    shifts = [abs(score - centred_score[pair]) for pair, score in
              zip(zip(uncentred.pairs.src, uncentred.pairs.tgt), uncentred.pairs.score) if pair in centred_score]
    assert len(shifts) > 100 and max(shifts) > 0.01  # the same pairs, scored differently


def test_read_bucc_bad_input(tmp_path):
    folder = write_bucc(tmp_path / "bucc", 5, 2)
    with pytest.raises(ValueError, match="SRC-TGT"):
        read_bucc(folder, "xxen")
    with pytest.raises(ValueError, match="no de-en.de.tsv"):
        read_bucc(folder, "de-en")
    with pytest.raises(ValueError, match="no such directory"):
        read_bucc(tmp_path / "nope", "xx-en")
    (folder / "xx-en.xx.tsv").write_text("xx-1 no tab here\n")
    with pytest.raises(ValueError, match=r"xx-en.xx.tsv:1: expected id<TAB>sentence"):
        read_bucc(folder, "xx-en")


def write_tatoeba(folder: Path, n: int = 80) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    eng, other = synthetic_pairs(n, seed=21)
    (folder / "tatoeba.deu-eng.deu").write_text("\n".join(other) + "\n")
    (folder / "tatoeba.deu-eng.eng").write_text("\n".join(eng) + "\n")
    return folder


def test_paired_and_tatoeba_accuracy(encoder, tmp_path):
    folder = write_tatoeba(tmp_path / "tatoeba")
    score = paired_accuracy(encoder, folder / "tatoeba.deu-eng.deu", folder / "tatoeba.deu-eng.eng")
    assert score.lang == "deu" and score.to_pivot > 0.7 and score.from_pivot > 0.7
    report = tatoeba_accuracy(encoder, folder)
    assert [s.lang for s in report.scores] == ["deu"] and report.average == pytest.approx(score.mean)
    # shuffling one side breaks the alignment: accuracy must collapse
    lines = (folder / "tatoeba.deu-eng.eng").read_text().splitlines()
    (tmp_path / "shuffled.eng").write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    assert paired_accuracy(encoder, folder / "tatoeba.deu-eng.deu", tmp_path / "shuffled.eng").to_pivot < 0.1
    (tmp_path / "short.eng").write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(ValueError, match="must align"):
        paired_accuracy(encoder, folder / "tatoeba.deu-eng.deu", tmp_path / "short.eng")


def test_eval_cli(tiny_model, tmp_path, capsys, monkeypatch):
    folder = write_bucc(tmp_path / "bucc")
    code, out, err = run_cli(["eval", "bucc", str(folder), "--pair", "xx-en", "--model", str(tiny_model),
                              "--json"], capsys, monkeypatch)
    assert code == 0, err
    row = json.loads(out.strip().splitlines()[-1])
    assert row["pair"] == "xx-en" and row["f1"] > 0.6 and "threshold" in row
    code, out, err = run_cli(["eval", "bucc", str(folder), "--pair", "xx-en", "--model", str(tiny_model),
                              "--threshold", str(row["threshold"]), "--json"], capsys, monkeypatch)
    again = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and again["at_threshold"]["f1"] == row["f1"] and again["at_threshold"]["mined"] == row["mined"]
    code, out, err = run_cli(["eval", "bucc", str(folder), "--pair", "xx-en", "--model", str(tiny_model),
                              "--no-centre", "--json"], capsys, monkeypatch)
    plain = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and row["centre"] and not plain["centre"] and plain["threshold"] != row["threshold"]

    tatoeba = write_tatoeba(tmp_path / "tatoeba")
    code, out, err = run_cli(["eval", "retrieval", str(tatoeba), "--model", str(tiny_model)], capsys, monkeypatch)
    assert code == 0, err
    assert "deu" in out and "average" in out and "xSIM" in out

    eng, other = synthetic_pairs(40, seed=5)
    rows = {"id": list(range(40)) * 2, "lang": ["eng_Latn"] * 40 + ["deu_Latn"] * 40, "text": eng + other}
    pq.write_table(pa.table(rows), tmp_path / "multi.parquet")
    code, out, err = run_cli(["eval", "retrieval", str(tmp_path / "multi.parquet"), "--model", str(tiny_model),
                              "--json"], capsys, monkeypatch)
    assert code == 0, err
    row = json.loads(out.strip().splitlines()[-1])
    assert row["langs"]["deu_Latn"]["to_pivot"] > 0.7 and row["average"] > 0.7
    # String ids work like integers; ids that no two languages share are a one-line error naming the rule.
    pq.write_table(pa.table({**rows, "id": [f"s{i}" for i in range(40)] * 2}), tmp_path / "named.parquet")
    code, out, err = run_cli(["eval", "retrieval", str(tmp_path / "named.parquet"), "--model", str(tiny_model),
                              "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["average"] == row["average"]
    pq.write_table(pa.table({**rows, "id": [f"r{i}" for i in range(80)]}), tmp_path / "rows.parquet")
    code, out, err = run_cli(["eval", "retrieval", str(tmp_path / "rows.parquet"), "--model", str(tiny_model)],
                             capsys, monkeypatch)
    assert code == 2 and "share one id" in err and len(err.strip().splitlines()) == 1

    code, out, err = run_cli(["eval", "bucc", str(folder), "--pair", "de-en", "--model", str(tiny_model)],
                             capsys, monkeypatch)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(["eval", "retrieval", str(tmp_path / "missing.parquet"), "--model", str(tiny_model)],
                             capsys, monkeypatch)
    assert code == 2 and "missing.parquet" in err and "Traceback" not in err


class _SameTextSameVector:
    """Encodes a sentence as a fixed random unit vector of its text: translations written identically match."""

    def encode(self, texts):
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(16) for t in texts]
        return np.array([r / np.linalg.norm(r) for r in rows], dtype=np.float32)


def test_retrieval_keeps_script_variants_apart_when_asked_by_label(tmp_path):
    from emsearch.evaluate import retrieval_accuracy

    texts = [f"sentence {i}" for i in range(20)]
    rows = {"id": list(range(20)) * 3, "lang": ["eng_Latn"] * 20 + ["zho_Hans"] * 20 + ["zho_Hant"] * 20,
            "text": texts * 3}
    pq.write_table(pa.table(rows), tmp_path / "multi.parquet")
    encoder = _SameTextSameVector()
    by_label = retrieval_accuracy(encoder, tmp_path / "multi.parquet", langs=["zho_Hans"])
    assert [s.lang for s in by_label.scores] == ["zho_Hans"] and by_label.average == 1.0
    by_code = retrieval_accuracy(encoder, tmp_path / "multi.parquet", langs=["zh"])
    assert [s.lang for s in by_code.scores] == ["zho_Hans", "zho_Hant"]
