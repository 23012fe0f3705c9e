"""The LMDB sentence store: round trips, duplicate ids, idempotent reruns, per-language rows, map growth."""

from __future__ import annotations

import numpy as np
import pytest

from emsearch.index.store import DuplicateIdError, Record, Store


def put(store, mark, first, ids, langs):
    store.put_shard(mark, first, ids, langs, [f"text {i}" for i in ids], [{"k": i} for i in ids])


def test_round_trip_languages_and_read_only(tmp_path):
    store = Store.create(tmp_path / "s")
    put(store, "shard:0", 0, ["a", "b", "c"], ["deu", "eng", "deu"])
    put(store, "shard:1", 3, ["d", "é"], ["eng", "fra"])
    assert store.has_mark("shard:1") and not store.has_mark("shard:2")
    assert store.finalize() == {"deu": 2, "eng": 2, "fra": 1}
    store.close()

    ro = Store.open(tmp_path / "s")
    assert len(ro) == 5
    assert ro.languages() == {"deu": 2, "eng": 2, "fra": 1}
    np.testing.assert_array_equal(ro.rows_of_lang("eng"), [1, 3])
    assert ro.rows_of_lang("spa") is None
    assert ro.get([4, 0]) == [Record(4, "é", "fra", "text é", {"k": "é"}), Record(0, "a", "deu", "text a", {"k": "a"})]
    assert ro.row_of_id("d") == 3 and ro.row_of_id("zz") is None
    with pytest.raises(LookupError, match="row 9 is not in the sentence store"):
        ro.get([9])
    with pytest.raises(LookupError, match="row -1 is not in the sentence store"):
        ro.get([-1])
    ro.close()


def test_duplicate_ids_are_refused_but_a_rerun_of_the_same_rows_is_not(tmp_path):
    store = Store.create(tmp_path / "s")
    put(store, "shard:0", 0, ["a", "b"], ["deu", "deu"])
    put(store, "shard:0", 0, ["a", "b"], ["deu", "deu"])  # the same shard again (a resumed build)
    assert len(store) == 2
    with pytest.raises(DuplicateIdError, match=r"duplicate id 'b' \(rows 1 and 3\)"):
        put(store, "shard:1", 2, ["c", "b"], ["deu", "deu"])
    assert len(store) == 2 and not store.has_mark("shard:1")  # the failed shard left nothing behind
    with pytest.raises(DuplicateIdError, match="duplicate id 'x'"):
        put(store, "shard:1", 2, ["x", "x"], ["deu", "deu"])


def test_map_grows_when_full(tmp_path):
    store = Store.create(tmp_path / "s", map_size=1 << 16)
    for shard in range(4):
        ids = [str(shard * 500 + i) for i in range(500)]
        put(store, f"shard:{shard}", shard * 500, ids, ["eng"] * 500)
    assert len(store) == 2000 and store.finalize() == {"eng": 2000}
    assert store.env.info()["map_size"] > 1 << 16


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no sentence store; rerun emsearch build-index"):
        Store.open(tmp_path / "nothing")
