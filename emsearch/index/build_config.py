"""What one index build is asked to do: a frozen dataclass, below both the build and `verify`'s repair command
(which names every option that differs from its default)."""

from __future__ import annotations

from dataclasses import dataclass

from emsearch.config import ENCODE_BATCH_TOKENS


@dataclass(frozen=True)
class BuildConfig:
    """One build; what decides the embeddings is also the resume identity (input, model, columns, shard_size)."""

    input: str
    out: str
    model: str | None = None  # model bundle directory; None = the default model
    text_column: str = "text"
    lang_column: str = "lang"
    id_column: str | None = None
    lang: str | None = None  # language of every row
    shard_size: int = 50_000  # rows per embedding shard
    window_rows: int = 4096  # rows per encoding task (length-sorted inside), saved as done: the unit of resumption
    batch_tokens: int = ENCODE_BATCH_TOKENS
    workers: int = 1  # encoding processes (or Ray actors); 0 = one per cluster CPU/GPU with Ray
    ray: bool = False
    ray_address: str | None = None
    index_factory: str | None = None  # overrides the automatic choice
    max_index_memory: int = 4 << 30
    merge: bool = False  # merge IVF groups into one on-disk index
    centre: str = "corpus"  # what vectors are centred on: the corpus mean (the model's mining thresholds assume
    # it), each row's language's mean (better cross-lingual search), or "none"
    overwrite: bool = False
