"""`Encoder.load(path).encode(texts)`: the one way to turn sentences into vectors.

A model bundle is a directory:
    config.json        model shape, model id (hash of the weights), default mining threshold, languages
    model.safetensors  encoder weights only (the training checkpoint with heads and optimiser is separate)
    tokenizer.model    SentencePiece
    README.md          model card
Loading never unpickles. The package ships its default bundle in `emsearch/models/default/`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file

from emsearch.atomic import file_sha256, save_npy, swap_dir
from emsearch.errors import EmsearchError, ModelLoadError
from emsearch.config import ENCODE_BATCH_TOKENS, ModelConfig, from_dict
from emsearch.corpus import Corpus, CorpusSpec, utf8_problem
from emsearch.languages import normalize_lang
from emsearch.model import EMSEncoder
from emsearch.progress import bar
from emsearch.tokenizer import Tokenizer

BUNDLE_FORMAT = "emsearch-ems-1"
DEFAULT_MODEL_DIR = Path(str(resources.files("emsearch").joinpath("models/default")))


def language_pair(a: str, b: str) -> str:
    """Key of a language pair in a bundle's `mining_thresholds`: both codes normalised, sorted ("deu-eng"); the
    ratio margin scores a pair alike in both directions."""
    return "-".join(sorted((normalize_lang(a), normalize_lang(b))))


def weights_id(path: Path) -> str:
    """Model identity: the first 16 hex digits of the SHA-256 of the weights file."""
    return file_sha256(path)[:16]


def length_batches(lengths: Sequence[int], batch_tokens: int) -> Iterator[np.ndarray]:
    """Indices grouped longest-first into batches of at most `batch_tokens` padded tokens (at least one row)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    start = 0
    while start < len(order):
        width = lengths[order[start]]
        rows = max(1, batch_tokens // max(width, 1))
        yield order[start : start + rows]
        start += rows


WEIGHT_FORMATS = ("fp32", "fp16", "int8", "int6")
QUANTIZED_TABLE = "tok_emb.weight"  # the one tensor int8/int6 apply to: nearly all of a bag model's bytes
LEVELS = {"int8": 127, "int6": 31}


def pack_weights(state: dict[str, torch.Tensor], weights: str) -> dict[str, torch.Tensor]:
    """The state dict as stored: every tensor fp32 or fp16; with "int8" or "int6", the token table as integer
    rows and a `NAME.scale` per row (absmax / 127 or / 31, fp16). int8 rows are `NAME.int8`; int6 rows are
    `NAME.int6`, four values (each plus 32) in three bytes. Quantizing a table that was loaded from the same
    format gives it back exactly (its largest entry per row is ±levels × scale)."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    dtype = torch.float32 if weights == "fp32" else torch.float16
    out = {k: v.detach().to("cpu", dtype).contiguous() for k, v in state.items()}
    if weights in LEVELS:
        table = state[QUANTIZED_TABLE].detach().to("cpu", torch.float32)
        scale = (table.abs().amax(1) / LEVELS[weights]).clamp(min=2**-14).half()  # fp16's smallest normal: no 0
        q = (table / scale.float()[:, None]).round().clamp(-LEVELS[weights], LEVELS[weights])
        out[f"{QUANTIZED_TABLE}.{weights}"] = q.to(torch.int8) if weights == "int8" else _pack6(q.to(torch.int32))
        out[QUANTIZED_TABLE + ".scale"] = scale
        del out[QUANTIZED_TABLE]
    return out


def _pack6(q: torch.Tensor) -> torch.Tensor:
    """Rows of values -31..31 → uint8 rows, four values (plus 32: 6 bits each) in every three bytes."""
    if q.shape[1] % 4:
        raise ValueError(f"int6 packs four values in three bytes: a table {q.shape[1]} wide needs int8")
    v = (q + 32).reshape(len(q), -1, 4)
    word = v[..., 0] | (v[..., 1] << 6) | (v[..., 2] << 12) | (v[..., 3] << 18)
    return torch.stack([word & 255, (word >> 8) & 255, word >> 16], dim=2).reshape(len(q), -1).to(torch.uint8)


def _unpack6(packed: torch.Tensor) -> torch.Tensor:
    b = packed.to(torch.int32).reshape(len(packed), -1, 3)
    word = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    return torch.stack([(word >> s) & 63 for s in (0, 6, 12, 18)], dim=2).reshape(len(packed), -1) - 32


def unpack_weights(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stored tensors → the fp32 state dict (integer rows times their scales)."""
    state = {k: v.float() for k, v in stored.items() if not k.endswith((".int8", ".int6", ".scale"))}
    for key in (k for k in stored if k.endswith((".int8", ".int6"))):
        name, fmt = key.rsplit(".", 1)
        q = stored[key] if fmt == "int8" else _unpack6(stored[key])
        state[name] = q.float() * stored[name + ".scale"].float()[:, None]
    return state


def pad(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class Encoder:
    """A trained EMS encoder with its tokenizer. `encode` returns float32, L2-normalised rows, in input order."""

    def __init__(self, model: EMSEncoder, tokenizer: Tokenizer, info: dict[str, Any], device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.info = info

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg

    @property
    def dim(self) -> int:
        return self.model.cfg.dim

    @property
    def model_id(self) -> str:
        return self.info["model_id"]

    def mining_threshold(self, src: str, tgt: str) -> float | None:
        """Default threshold (ratio margin) for mining src↔tgt: the pair's own, set on its dev gold, where the
        bundle has one, else the one shared by all pairs; None when the bundle has neither."""
        return self.info.get("mining_thresholds", {}).get(language_pair(src, tgt), self.info.get("mining_threshold"))

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | None = None) -> Encoder:
        """Load a bundle directory; `None` loads the default model that ships with the package. A model2vec or
        sentence-transformers static model folder loads too (`emsearch.interop.static_model`)."""
        root = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if not (root / "tokenizer.model").is_file() and any((root / f).is_file() for f in ("modules.json",
                                                                                          "tokenizer.json")):
            from emsearch.interop.static_model import static_parts

            return cls(*static_parts(root), device)
        files = {name: root / name for name in ("config.json", "model.safetensors", "tokenizer.model")}
        missing = [name for name, f in files.items() if not f.is_file()]
        if not root.is_dir() or missing:
            raise ModelLoadError(f"{root} is not an emsearch model: missing {', '.join(missing) or 'directory'}")
        try:
            info = json.loads(files["config.json"].read_text(encoding="utf-8"))
            cfg = from_dict(ModelConfig, info["model"])
        except (ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{files['config.json']} is unreadable: {e}") from None
        if info.get("format") != BUNDLE_FORMAT:
            raise ModelLoadError(f"{root}: unknown model format {info.get('format')!r}, expected {BUNDLE_FORMAT}")
        actual = weights_id(files["model.safetensors"])
        if info.get("model_id") != actual:
            raise ModelLoadError(f"{files['model.safetensors']} does not match config.json (corrupt or replaced)")
        with torch.device("meta"):  # no random initialisation of weights the file replaces
            model = EMSEncoder(cfg)
        model.load_state_dict(unpack_weights(load_file(str(files["model.safetensors"]))), assign=True)
        return cls(model, Tokenizer(files["tokenizer.model"], cfg.max_len), info, device)

    def save(self, path: str | Path, *, weights: str = "fp16", card: str | None = None, **extra: Any) -> Path:
        """Write the bundle atomically (a temp directory renamed into place); `extra` goes into config.json.

        `weights`: "fp32", "fp16", "int8" (the token embedding table as int8 rows with one scale each, the
        rest fp16: half the size of fp16, for a large vocabulary) or "int6" (the same at 6 bits: three eighths). This encoder is left as it was: its fp32
        weights are not the saved ones, so it does not take the bundle's model id. `Encoder.load(path)` gives
        the saved model.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(pack_weights(self.model.state_dict(), weights), str(tmp / "model.safetensors"))
        shutil.copyfile(self.tokenizer.path, tmp / "tokenizer.model")
        info = {k: v for k, v in self.info.items() if k not in ("model", "model_id", "format")}
        info.update(extra)
        info.update(format=BUNDLE_FORMAT, model=asdict(self.config), model_id=weights_id(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        elif (path / "README.md").is_file():
            shutil.copyfile(path / "README.md", tmp / "README.md")
        swap_dir(tmp, path)
        return path

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_tokens: int = ENCODE_BATCH_TOKENS,
               progress: bool = False) -> np.ndarray:
        """Sentence vectors (len(texts), dim), float32, unit length; row i is texts[i]."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of sentences; wrap a single sentence in a list")
        for i, text in enumerate(texts):
            if utf8_problem(text):
                raise EmsearchError(f"text {i} is {utf8_problem(text)}; encode UTF-8 text")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        ids = self.tokenizer.encode(texts)
        lengths = [len(s) for s in ids]
        use_amp = self.device.type == "cuda"
        with bar(Console(stderr=True) if progress else None, "encoding", len(texts)) as shown:
            for rows in length_batches(lengths, batch_tokens):
                x = pad([ids[i] for i in rows]).to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=use_amp):
                    u = self.model(x)
                out[rows] = torch.nn.functional.normalize(u.float(), dim=-1).cpu().numpy()
                shown.advance(len(rows))
        return out


def embed_file(input: str | Path, output: str | Path, *, lang: str | None = None,
               text_column: str = CorpusSpec.text_column, model: str | Path | None = None,
               batch_tokens: int = ENCODE_BATCH_TOKENS) -> np.ndarray:
    """`emsearch embed`: the sentences of `input` (plain text, one per line, or a column of parquet / JSONL / TSV)
    as unit vectors saved to the .npy `output`, row i for input record i (an empty one keeps its row); returns
    them. `lang`, the input's language, is checked as a code (the encoder needs no language id)."""
    input, output = Path(input), Path(output)
    if input.is_dir():
        raise EmsearchError(f"{input} is a directory: give a text, parquet, JSONL or TSV file")
    if not output.parent.is_dir():
        raise EmsearchError(f"{output.parent}: no such directory for the output")
    if output.is_dir():
        raise EmsearchError(f"{output} is a directory: give a file name for the vectors, e.g. {output / 'x.npy'}")
    texts = list(Corpus(CorpusSpec(input, text_column=text_column, lang=lang)).texts())
    if not texts:
        raise EmsearchError(f"{input}: no sentences")
    vectors = Encoder.load(model).encode(texts, batch_tokens=batch_tokens, progress=len(texts) > 5000)
    save_npy(output, vectors)
    return vectors
