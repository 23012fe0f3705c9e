"""`emsearch train` and `emsearch embed` through the real entry point: bad input is one line on stderr that
starts with `error:` and a non-zero exit, never a traceback; `embed` writes row i for input line i."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emsearch.cli import main
from emsearch.encoder import Encoder

from conftest import synthetic_pairs


@pytest.fixture()
def cli(monkeypatch, capsys):
    """Run `emsearch ARGS...` in-process through `main()`; returns (exit code, stdout, stderr)."""

    def run(*args: str | Path) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["emsearch", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


def assert_one_line_error(result: tuple[int, str, str], fragment: str) -> None:
    code, _, err = result
    lines = err.strip().splitlines()
    assert code != 0 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]


def tsv(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# --- train: bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("empty.tsv", b"", "the file is empty"),
        ("lang.tsv", b"deu\thallo\thello\nxx\tja\tyes\n", "unknown language code 'xx'"),
        ("bytes.tsv", b"deu\tgr\xfc\xdf\tgreeting\ndeu\t\xff\thello\n", "no usable pairs"),
        ("fields.tsv", b"deu\thallo\n", "fields.tsv:1: expected 3 tab-separated fields (lang, text, eng), got 2"),
    ],
)
def test_train_rejects_unusable_data(cli, tmp_path, name, content, fragment):
    data = tsv(tmp_path / name, content)
    assert_one_line_error(cli("train", "--data", data, "--out", tmp_path / "run", "--preset", "tiny"), fragment)


def test_train_rejects_parquet_without_the_pair_columns(cli, tmp_path):
    pq.write_table(pa.table({"lang": ["deu"], "text": ["hallo"]}), tmp_path / "p.parquet")
    result = cli("train", "--data", tmp_path / "p.parquet", "--out", tmp_path / "run")
    assert_one_line_error(result, "missing column(s) eng; training pairs need lang, text, eng")


def test_train_rejects_bad_settings(cli, tmp_path):
    data = tsv(tmp_path / "p.tsv", b"deu\thallo\thello\n")
    out = tmp_path / "run"
    assert_one_line_error(cli("train", "--out", out), "no training data")
    assert_one_line_error(cli("train", "--data", data, "--out", out, "--preset", "huge"), "unknown preset 'huge'")
    assert_one_line_error(cli("train", "--data", data, "--out", out, "--xtr-weight", "0", "--contrastive-weight", "0"),
                          "not both 0")
    assert_one_line_error(cli("train", "--out", tmp_path / "none", "--resume"), "nothing to resume")
    (tmp_path / "recipe.json").write_text('{"steps": 10, "colour": "red"}')
    assert_one_line_error(cli("train", tmp_path / "recipe.json"), "unknown TrainConfig field(s): colour")


def test_train_then_resume_through_the_cli(cli, tmp_path):
    eng, other = synthetic_pairs(300)
    data = tsv(tmp_path / "p.tsv", "".join(f"deu\t{o}\t{e}\n" for o, e in zip(other, eng)).encode())
    args = ("train", "--data", data, "--out", tmp_path / "run", "--preset", "tiny", "--steps", "3",
            "--batch-tokens", "256")
    code, _, err = cli(*args)
    assert code == 0, err
    assert "model written to" in err and (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert_one_line_error(cli(*args), "already holds a run: pass --resume")
    # Resuming with a changed setting would silently ignore it: refused, naming the setting.
    changed = [a if a != "3" else "30" for a in args]
    assert_one_line_error(cli(*changed, "--resume"), "records a different steps")
    code, _, err = cli(*args, "--resume")  # the same command plus --resume is accepted
    assert code == 0 and "resumed at step 3" in err, err


# --- embed -----------------------------------------------------------------------------------------------------

def test_embed_writes_row_i_for_line_i(cli, tiny_model, tmp_path):
    lines = ["ka001 ka002", "", "aalo balo calo dalo", "ka001 ka002", "ka119"] + synthetic_pairs(20, seed=3)[1]
    src = tmp_path / "in.txt"
    src.write_bytes(("\r\n".join(lines[:3]) + "\n" + "\n".join(lines[3:]) + "\n").encode())
    code, _, err = cli("embed", src, "-o", tmp_path / "out.npy", "--model", tiny_model, "--lang", "de")
    assert code == 0, err
    xq = np.load(tmp_path / "out.npy")
    expected = Encoder.load(tiny_model).encode(lines)
    assert xq.shape == (len(lines), 64) and xq.dtype == np.float32
    np.testing.assert_allclose(xq, expected, atol=1e-6)
    np.testing.assert_array_equal(xq[0], xq[3])  # duplicate lines keep their own rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.npy"]  # no temp file left


def test_embed_reads_a_parquet_column(cli, tiny_model, tmp_path):
    texts = synthetic_pairs(10, seed=4)[0]
    texts[3] = None  # a null text keeps its row, like an empty line
    pq.write_table(pa.table({"id": list(range(10)), "sentence": texts}), tmp_path / "in.parquet")
    assert_one_line_error(cli("embed", tmp_path / "in.parquet", "-o", tmp_path / "o.npy", "--model", tiny_model),
                          "no column 'text' (columns: id, sentence); name the right one with --text-column")
    code, _, err = cli("embed", tmp_path / "in.parquet", "-o", tmp_path / "o.npy", "--model", tiny_model,
                       "--text-column", "sentence")
    assert code == 0, err
    expected = Encoder.load(tiny_model).encode([t or "" for t in texts])
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), expected, atol=1e-6)


def test_embed_reads_jsonl_through_the_corpus_reader(cli, tiny_model, tmp_path):
    texts = synthetic_pairs(5, seed=5)[0]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"text": t, "lang": "xx-not-checked"}) for t in texts) + "\n")
    code, _, err = cli("embed", src, "-o", tmp_path / "o.npy", "--model", tiny_model)
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), Encoder.load(tiny_model).encode(texts), atol=1e-6)


@pytest.mark.parametrize(
    "content, extra, fragment",
    [
        (b"fine\ngr\xfc\xdf\n", (), "in.txt:2: not valid UTF-8 (byte 2); re-encode the file as UTF-8"),
        (b"", (), "the file is empty"),
        (b"hallo\n", ("--lang", "xx"), "unknown language code 'xx'"),
        (b"hallo\n", ("--lang", "[/x]"), "unknown language code '[/x]'"),  # printed as text, not markup
    ],
)
def test_embed_rejects_bad_input(cli, tiny_model, tmp_path, content, extra, fragment):
    src = tsv(tmp_path / "in.txt", content)
    result = cli("embed", src, "-o", tmp_path / "o.npy", "--model", tiny_model, *extra)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "o.npy").exists()


def test_embed_rejects_missing_input_and_non_models(cli, tiny_model, tmp_path):
    assert_one_line_error(cli("embed", tmp_path / "nope.txt", "-o", tmp_path / "o.npy", "--model", tiny_model),
                          "nope.txt: no such file")
    src = tsv(tmp_path / "[bold]in.txt", b"hallo\n")
    assert_one_line_error(cli("embed", src, "-o", tmp_path / "o.npy", "--model", tmp_path),
                          "is not an emsearch model: missing config.json")
    assert_one_line_error(cli("embed", tmp_path, "-o", tmp_path / "o.npy", "--model", tiny_model),
                          "is a directory: give a text, parquet, JSONL or TSV file")
    assert_one_line_error(cli("embed", src, "-o", tmp_path / "absent" / "o.npy", "--model", tiny_model),
                          "absent: no such directory for the output")
    assert_one_line_error(cli("embed", src, "-o", tmp_path, "--model", tiny_model),
                          f"{tmp_path} is a directory: give a file name for the vectors")
    garbage = tsv(tmp_path / "g.parquet", b"not parquet at all")
    assert_one_line_error(cli("embed", garbage, "-o", tmp_path / "o.npy", "--model", tiny_model),
                          "g.parquet: not a readable parquet file")


def test_the_installed_entry_point_prints_one_line_without_traceback(tmp_path):
    src = tsv(tmp_path / "in.txt", b"hallo\n")
    proc = subprocess.run([sys.executable, "-m", "emsearch.cli", "embed", str(src), "-o", str(tmp_path / "o.npy"),
                           "--lang", "[/x]"], capture_output=True, text=True, timeout=120)
    assert_one_line_error((proc.returncode, proc.stdout, proc.stderr), "unknown language code '[/x]'")


def test_the_command_line_starts_without_torch():
    """`emsearch --help` stays fast: torch (seconds to import) loads when a command encodes or trains."""
    code = "import sys, emsearch, emsearch.cli, emsearch.index; print('torch' in sys.modules, emsearch.Index)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "<class", "'emsearch.index.reader.Index'>"]
