"""Every file an index holds, damaged every way (truncated; bytes flipped at its start, middle and end; a 4 KiB
page flipped; deleted): `verify` names it, `query`, `mine` and `serve` answer one line (or, for a damaged
manifest copy, exactly what a clean index answers), never a traceback or a different answer; and the repair
command `verify` prints restores an index that `verify` calls whole and that answers exactly like a clean build,
re-encoding only the rows of a damaged shard."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from faulty import DAMAGES, answers, count_encoded, one_thread, one_line_error  # noqa: F401
from conftest import run_cli
from toy_index import build_toy_index
from emsearch.encoder import Encoder
from emsearch.index import Index
from emsearch.server import SearchService

IVF = {"index_factory": "IVF8,PQ8x4"}
FILES = {  # file → the build options of the index holding it
    "manifest.json": IVF, "manifest.json.bak": IVF, "embeddings/00003.npy": IVF, "store/data.mdb": IVF,
    "faiss/trained.index": IVF, "faiss/group-0000.index": IVF,
    "faiss/merged.index": {**IVF, "merge": True}, "faiss/merged.ivfdata": {**IVF, "merge": True},
}


@pytest.fixture(scope="module")
def clean(tiny_model, tmp_path_factory):
    """Per set of build options: the clean index and its answers."""
    built = {}
    for options in ({**IVF}, {**IVF, "merge": True}):
        toy = build_toy_index(tmp_path_factory.mktemp("clean"), tiny_model, **options)
        queries = toy.deu[:4] + toy.eng[:2]
        built[tuple(options.items())] = toy, queries, answers(toy.path, queries)
    return built, Encoder.load(tiny_model)


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("file", FILES)
def test_damage_is_found_refused_and_repaired(clean, file, damage, tmp_path, capsys, monkeypatch):
    built, encoder = clean
    toy, queries, expected = built[tuple(FILES[file].items())]
    idx = tmp_path / "idx"
    shutil.copytree(toy.path, idx)
    DAMAGES[damage](idx / file)
    manifest_copy = file.startswith("manifest")

    code, _, err = run_cli(["verify", idx], capsys, monkeypatch)
    assert code == 1 and "Traceback" not in err
    assert Path(file).name in err.splitlines()[0] and err.splitlines()[-1].startswith("repair: emsearch build-index")
    repair = shlex.split(err.splitlines()[-1].removeprefix("repair: ").split("  (")[0])[1:]

    if manifest_copy:  # the other copy is read: the answers are the clean index's
        assert answers(idx, queries, encoder) == expected
        with Index.open(idx, encoder) as index:
            body = SearchService(index).search({"texts": queries[:1], "k": 3})
        assert [h["id"] for h in body["results"][0]] == [hit[0] for hit in expected[0][:3]]
    else:
        for command in (["query", queries[0], "--index", idx],
                        ["mine", "--src", "de", "--tgt", "en", "--index", idx, "-o", tmp_path / "pairs.tsv"],
                        ["serve", idx, "--port", "0"]):
            line = one_line_error(*run_cli(command, capsys, monkeypatch)[::2])
            assert Path(file).name in line and "repair it with: emsearch build-index" in line, line
        assert not (tmp_path / "pairs.tsv").exists()

    encoded = count_encoded(monkeypatch)
    code, _, err = run_cli(repair, capsys, monkeypatch)
    assert code == 0 and f"repairing {idx}" in err, err
    assert sum(encoded) == (64 if file.startswith("embeddings") else 0)  # only a damaged shard is re-encoded
    code, out, _ = run_cli(["verify", idx], capsys, monkeypatch)
    assert code == 0 and "whole" in out
    assert answers(idx, queries, encoder) == expected
