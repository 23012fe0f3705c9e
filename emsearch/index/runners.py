"""Runners that turn windows of texts into fp16 vectors: in-process, or in a pool of worker processes.

All runners call the same `encode_window`, so every path writes the same vectors (Ray actors, in `ray_runners`,
are handed it by `make_runner`: the Ray module imports nothing from here, so the two form no cycle). A runner's `submit(texts)` returns something with `.result()` → (float16 (n, dim), truncated count);
the build keeps at most `2 · parallelism` windows in flight, which bounds memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from emsearch.encoder import DEFAULT_MODEL_DIR, Encoder


def encode_window(encoder: Encoder, texts: Sequence[str], batch_tokens: int) -> tuple[np.ndarray, int]:
    """Vectors of `texts` (float16, unit length, input order) and how many texts were truncated."""
    vectors = encoder.encode(list(texts), batch_tokens=batch_tokens)
    return vectors.astype(np.float16), encoder.tokenizer.count_truncated(texts)


class _Done:
    def __init__(self, value: tuple[np.ndarray, int]):
        self.value = value

    def result(self) -> tuple[np.ndarray, int]:
        return self.value


class InProcess:
    """Encode in this process (torch's own threads): the default, and the reference for the other runners."""

    parallelism = 1

    def __init__(self, encoder: Encoder, batch_tokens: int):
        self.encoder = encoder
        self.batch_tokens = batch_tokens

    def submit(self, texts: Sequence[str]) -> _Done:
        return _Done(encode_window(self.encoder, texts, self.batch_tokens))

    def close(self) -> None:
        pass


_worker_encoder: Encoder | None = None


def _init_worker(model: str | None, threads: int) -> None:
    global _worker_encoder
    torch.set_num_threads(threads)
    _worker_encoder = Encoder.load(model)


def _encode_in_worker(texts: list[str], batch_tokens: int) -> tuple[np.ndarray, int]:
    if _worker_encoder is None:
        raise RuntimeError("encoding worker used before its initialiser ran")
    return encode_window(_worker_encoder, texts, batch_tokens)


class ProcessPool:
    """`workers` processes, one model each, sharing the cores (torch threads = cores // workers)."""

    def __init__(self, model: str | Path | None, workers: int, batch_tokens: int):
        threads = max(1, (os.cpu_count() or 1) // workers)
        self.parallelism = workers
        self.batch_tokens = batch_tokens
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                        initargs=(str(model) if model is not None else None, threads))

    def submit(self, texts: Sequence[str]) -> Future:
        return self.pool.submit(_encode_in_worker, list(texts), self.batch_tokens)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def make_runner(encoder: Encoder, model: str | Path | None, workers: int, batch_tokens: int, *, ray: bool = False,
                ray_address: str | None = None):
    """In-process for one worker, a process pool for several, Ray actors with `ray` (workers 0: one per GPU/CPU)."""
    if ray:
        from emsearch.index import ray_runners

        ray_runners.connect(ray_address)
        return ray_runners.RayPool(Path(model) if model is not None else DEFAULT_MODEL_DIR,
                                   workers or ray_runners.cluster_workers(), batch_tokens, load=Encoder.load,
                                   encode=encode_window)
    if workers > 1:
        return ProcessPool(model, workers, batch_tokens)
    return InProcess(encoder, batch_tokens)
