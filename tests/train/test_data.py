"""Training data: reading and validating pairs, and the reproducible token-budget batch stream."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emsearch.config import TokenizerConfig
from emsearch.train.data import DataError, PairDataset, ParallelPairs, Ragged, read_pairs
from emsearch.tokenizer import Tokenizer, train_tokenizer

from conftest import synthetic_pairs, write_pairs


# --- reading ---------------------------------------------------------------------------------------------------

def test_read_parquet_and_tsv_normalise_languages_and_strip(tmp_path):
    pq.write_table(pa.table({"lang": ["de", "deu_Latn"], "text": [" eins ", "zwei"], "eng": ["one", " two"],
                             "extra": [1, 2]}), tmp_path / "a.parquet")
    (tmp_path / "b.tsv").write_text("lang\ttext\teng\nger\tdrei\tthree\r\nfr\tquatre\tfour\n", encoding="utf-8")
    pairs = read_pairs([tmp_path / "a.parquet", tmp_path / "b.tsv"])
    assert pairs.lang == ["deu", "deu", "deu", "fra"]
    assert pairs.text == ["eins", "zwei", "drei", "quatre"]
    assert pairs.eng == ["one", "two", "three", "four"]
    assert not pairs.skipped


def test_bad_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes(
        b"deu\tgut\tgood\n"
        b"deu\t\tempty\n"  # empty side
        b"deu\t   \tblank\n"  # blank side
        b"deu\tgr\xfc\xdf\tgreeting\n"  # Latin-1 bytes, not UTF-8
        b"deu\tnull\x00byte\tcontrol\n"  # control character
    )
    pairs = read_pairs([path])
    assert pairs.text == ["gut"]
    assert pairs.skipped == {"empty side": 2, "invalid text": 2}


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"deu\tonly two\n", "expected 3 tab-separated fields"),
        (b"xx\thallo\thello\n", "unknown language code 'xx'"),
        (b"deu\t\xff\xfe\thello\n", "no usable pairs"),
    ],
)
def test_unusable_tsv_files_raise_data_error(tmp_path, content, message):
    path = tmp_path / "p.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_pairs([path])


def test_parquet_without_required_columns_names_them(tmp_path):
    pq.write_table(pa.table({"lang": ["deu"], "sentence": ["hallo"]}), tmp_path / "p.parquet")
    with pytest.raises(DataError, match="missing column\\(s\\) text, eng"):
        read_pairs([tmp_path / "p.parquet"])


def test_garbage_parquet_missing_file_and_no_files_raise_data_error(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_pairs([tmp_path / "bad.parquet"])
    with pytest.raises(DataError, match="no such file"):
        read_pairs([tmp_path / "missing.parquet"])
    with pytest.raises(DataError, match="no training data"):
        read_pairs([])


# --- the batch stream ------------------------------------------------------------------------------------------

def test_ragged_batch_pads_with_zeros():
    r = Ragged([[5, 6, 7], [8], [9, 10]])
    np.testing.assert_array_equal(r.batch(np.array([2, 0, 1])), [[9, 10, 0], [5, 6, 7], [8, 0, 0]])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    eng, other = synthetic_pairs(2000)
    path = tmp_path_factory.mktemp("tok") / "tok.model"
    train_tokenizer({"eng": eng, "deu": other}, TokenizerConfig(vocab_size=300, sample_sentences=3000,
                                                                  model_type="bpe"), path)
    return Tokenizer(path, max_len=32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tokenizer) -> PairDataset:
    tmp = tmp_path_factory.mktemp("data")
    pairs = read_pairs([write_pairs(tmp / "deu.parquet", 900, seed=1),
                        write_pairs(tmp / "fra.parquet", 100, seed=2, lang="fra")])
    return PairDataset(pairs, tokenizer, ["deu", "eng", "fra"], max_length_ratio=3.0)


@pytest.mark.parametrize("budget", [64, 256, 1000])
def test_batches_never_exceed_the_token_budget_and_are_full(dataset, budget):
    batches = dataset.chunk(0, seed=0, alpha=0.3, batch_tokens=budget)
    assert sum(len(rows) for rows in batches) == PairDataset.CHUNK_PAIRS
    short = 0
    for rows in batches:
        batch = dataset.make_batch(rows)
        # Both sides are padded to one width in training: (B, max width) must fit the budget per side.
        assert len(rows) * max(batch.src.shape[1], batch.tgt.shape[1]) <= budget
        short += len(rows) < budget // int(dataset.width[rows].max())
    assert short <= 1  # only the tail of the chunk's longest-first order may be cut short


def test_chunks_sample_languages_by_temperature(dataset):
    rows = np.concatenate(dataset.chunk(0, seed=0, alpha=0.0, batch_tokens=512))
    fra = (dataset.lang[rows] == 2).mean()
    assert 0.47 < fra < 0.53  # alpha = 0: uniform over languages, although fra has 1/10 of the pairs
    rows = np.concatenate(dataset.chunk(0, seed=0, alpha=1.0, batch_tokens=512))
    assert 0.08 < (dataset.lang[rows] == 2).mean() < 0.12  # alpha = 1: proportional


def test_pair_batches_are_full_and_language_grouped_on_request(dataset):
    mixed = dataset.chunk(0, seed=0, alpha=0.0, batch_tokens=0, batch_pairs=64)
    grouped = dataset.chunk(0, seed=0, alpha=0.0, batch_tokens=0, batch_pairs=64, batch_langs=2)
    for batches in (mixed, grouped):
        assert all(len(rows) == 64 for rows in batches)
        assert len(batches) == PairDataset.CHUNK_PAIRS // 64
    # Runs of 32 rows of one language: far more of a row's in-batch negatives share its language.
    def same_language_share(batches):
        return np.mean([(dataset.lang[rows][:, None] == dataset.lang[rows][None, :]).mean() for rows in batches])
    assert same_language_share(mixed) < 0.55  # alpha 0: half fra, half deu
    assert same_language_share(grouped) > 0.7
    # The same rows are drawn either way (up to the chunk's cut-off tail): grouping changes which rows meet.
    drawn = [Counter(np.concatenate(b).tolist()) for b in (mixed, grouped)]
    assert sum((drawn[0] - drawn[1]).values()) < 64


def _take(stream, n):
    return [next(stream) for _ in range(n)]


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("src", "tgt", "src_lang", "duplicates"))


def test_stream_resumes_exactly_at_a_position_across_chunks(dataset, monkeypatch):
    monkeypatch.setattr(PairDataset, "CHUNK_PAIRS", 120)  # several chunks in a few dozen batches
    kw = dict(seed=5, alpha=0.3, batch_tokens=256)
    straight = _take(dataset.stream(**kw), 60)
    assert len({pos[0] for pos, _ in straight}) >= 3  # crossed chunk boundaries
    for cut in (0, 7, 19, 33):
        position = straight[cut][0]
        resumed = _take(dataset.stream(**kw, start=position), 60 - cut - 1)
        assert [p for p, _ in resumed] == [p for p, _ in straight[cut + 1:]]
        assert all(_same(a, b) for (_, a), (_, b) in zip(resumed, straight[cut + 1:]))
    # A different seed is a different order.
    assert not _same(_take(dataset.stream(**{**kw, "seed": 6}), 1)[0][1], straight[0][1])


def test_ranks_share_each_chunk_without_overlap(dataset, monkeypatch):
    monkeypatch.setattr(PairDataset, "CHUNK_PAIRS", 120)
    kw = dict(seed=5, alpha=0.3, batch_tokens=256)
    chunk = dataset.chunk(0, **kw)
    usable = len(chunk) - len(chunk) % 2
    rank0 = _take(dataset.stream(**kw, rank=0, world=2), usable // 2)
    rank1 = _take(dataset.stream(**kw, rank=1, world=2), usable // 2)
    assert [p for p, _ in rank0] == [p for p, _ in rank1]  # same positions: a resumed run stays in step
    for i, ((_, b0), (_, b1)) in enumerate(zip(rank0, rank1)):
        assert _same(b0, dataset.make_batch(chunk[2 * i]))
        assert _same(b1, dataset.make_batch(chunk[2 * i + 1]))


def test_length_ratio_filter_and_duplicate_marks(tokenizer):
    long = " ".join(f"ka{i:03d}" for i in range(12))
    pairs = ParallelPairs(lang=["deu"] * 4, text=["aalo", "balo", "calo", "aalo"],
                  eng=[long, "ka001", "ka001", "ka002"], skipped=Counter())
    data = PairDataset(pairs, tokenizer, ["deu", "eng"], max_length_ratio=2.0)
    assert len(data) == 3 and data.skipped["length ratio"] == 1
    dup = data.make_batch(np.arange(3)).duplicates
    # Kept rows: (balo, ka001), (calo, ka001), (aalo, ka002). Rows 0 and 1 share their English side.
    np.testing.assert_array_equal(dup, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_piece_counts_count_each_distinct_sentence_once(tokenizer):
    pairs = ParallelPairs(lang=["deu"] * 3, text=["aalo", "balo", "Balo"], eng=["ka001", "ka001", "ka002"],
                          skipped=Counter())
    data = PairDataset(pairs, tokenizer, ["deu", "eng"], max_length_ratio=4.0)
    counts = data.piece_counts(tokenizer.vocab_size)
    expected = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for text in ["aalo", "balo", "ka001", "ka002"]:  # "Balo" is "balo" again, "ka001" is one English sentence
        np.add.at(expected, tokenizer.encode([text])[0], 1)
    np.testing.assert_array_equal(counts, expected)
