"""The Ray path of `build-index --ray`: encoding windows in Ray actors (one model each), populating index groups in
Ray tasks. The driver still reads the input, writes the store, the shards and the manifest, so the output
directory only needs to exist on the driver's machine.

The model bundle is shipped through the object store as bytes and unpacked by each actor into a local temporary
directory, so cluster nodes need no shared filesystem. Actors and tasks call the same functions as the local
path (`runners.encode_window`, handed in by `runners.make_runner`, and `faiss_io.populate_serialized`): the
output is the same, bit for bit where the hardware computes the same floats (same CPU type and thread count).
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from emsearch.errors import EmsearchError
from emsearch.index.faiss_io import populate_serialized

def require_ray():
    try:
        import ray
    except ImportError:
        raise EmsearchError("--ray needs Ray: pip install 'emsearch[ray]'") from None
    return ray


def connect(address: str | None) -> None:
    """Join the cluster at `address` ('auto', 'ray://host:10001'), or RAY_ADDRESS, or start a local instance."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise EmsearchError(f"cannot reach the Ray cluster at {address}: {e}") from None


def in_order(submit: Callable, items: Iterable, in_flight: int, take: Callable | None = None) -> Iterator:
    """`take(submit(item))` (by default `ray.get`) for each item, in order, with at most `in_flight` submitted and
    not yet taken."""
    take = take or require_ray().get
    pending: deque = deque()
    for item in items:
        pending.append(submit(item))
        if len(pending) >= in_flight:
            yield take(pending.popleft())
    while pending:
        yield take(pending.popleft())


def cluster_workers() -> int:
    """A sensible actor count: one per GPU if the cluster has GPUs, else one per CPU."""
    resources = require_ray().cluster_resources()
    return max(1, int(resources.get("GPU", 0)) or int(resources.get("CPU", 1)))


class EncoderActor:
    """Holds one model, made by `load(model_dir)`; `encode(texts, batch_tokens)` is `encode(model, texts, ...)`."""

    def __init__(self, bundle: dict[str, bytes], threads: int, load: Callable[[str], Any], encode: Callable):
        import torch

        torch.set_num_threads(threads)
        self.dir = tempfile.TemporaryDirectory(prefix="emsearch-model-")
        for name, data in bundle.items():
            Path(self.dir.name, name).parent.mkdir(parents=True, exist_ok=True)
            Path(self.dir.name, name).write_bytes(data)
        self.encoder = load(self.dir.name)
        self._encode = encode

    def encode(self, texts: list[str], batch_tokens: int) -> tuple[np.ndarray, int]:
        return self._encode(self.encoder, texts, batch_tokens)


class _RayFuture:
    def __init__(self, ref):
        self.ref = ref

    def result(self):
        return require_ray().get(self.ref)


class RayPool:
    """A runner (see `runners`) over `workers` Ray actors, windows dealt round-robin."""

    def __init__(self, model_dir: Path, workers: int, batch_tokens: int, *, load: Callable[[str], Any],
                 encode: Callable, threads: int = 1):
        ray = require_ray()
        bundle = ray.put({str(f.relative_to(model_dir)): f.read_bytes() for f in model_dir.rglob("*") if f.is_file()})
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= workers else 0
        actor = ray.remote(num_cpus=threads, num_gpus=gpus)(EncoderActor)
        self.actors = [actor.remote(bundle, threads, load, encode) for _ in range(workers)]
        self.parallelism = workers
        self.batch_tokens = batch_tokens
        self._next = 0

    def submit(self, texts) -> _RayFuture:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return _RayFuture(actor.encode.remote(list(texts), self.batch_tokens))

    def close(self) -> None:
        ray = require_ray()
        for a in self.actors:
            ray.kill(a)


def populate_groups(trained: np.ndarray, groups: Iterable[list[tuple[int, np.ndarray]]],
                    in_flight: int) -> Iterator[np.ndarray]:
    """Populate each group (a list of (first row, fp16 block)) in a Ray task, at most `in_flight` at a time;
    yields the serialized indexes in group order."""
    ray = require_ray()
    task = ray.remote(num_cpus=1)(populate_serialized)
    trained_ref = ray.put(trained)
    yield from in_order(lambda blocks: task.remote(trained_ref, [(s, np.asarray(b)) for s, b in blocks]), groups,
                        in_flight)
