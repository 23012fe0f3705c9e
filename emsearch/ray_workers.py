"""The Ray path of `build-index --ray`: encoding windows in Ray actors (one model each), populating index groups in
Ray tasks. The driver still reads the input, writes the store, the shards and the manifest, so the output
directory only needs to exist on the driver's machine.

The model bundle is shipped through the object store as bytes and unpacked by each actor into a local temporary
directory, so cluster nodes need no shared filesystem. Actors and tasks call the same functions as the local
path (`encode_workers.encode_window`, `index_build.populate_serialized`): the output is the same, bit for bit
where the hardware computes the same floats (same CPU type and thread count).
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from emsearch.encoder import DEFAULT_MODEL_DIR
from emsearch.encode_workers import encode_window
from emsearch.index_build import populate_serialized

BUNDLE_FILES = ("config.json", "model.safetensors", "tokenizer.model")


def _ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'emsearch[ray]'") from None
    return ray


def connect(address: str | None) -> None:
    """Join the cluster at `address` ('auto', 'ray://host:10001'), or RAY_ADDRESS, or start a local instance."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise ValueError(f"cannot reach the Ray cluster at {address}: {e}") from None


def cluster_workers() -> int:
    """A sensible actor count: one per GPU if the cluster has GPUs, else one per CPU."""
    resources = _ray().cluster_resources()
    return max(1, int(resources.get("GPU", 0)) or int(resources.get("CPU", 1)))


class EncoderActor:
    """Holds one model; `encode` is `encode_window`."""

    def __init__(self, bundle: dict[str, bytes], threads: int):
        import torch

        from emsearch.encoder import Encoder

        torch.set_num_threads(threads)
        self.dir = tempfile.TemporaryDirectory(prefix="emsearch-model-")
        for name, data in bundle.items():
            Path(self.dir.name, name).write_bytes(data)
        self.encoder = Encoder.load(self.dir.name)

    def encode(self, texts: list[str], batch_tokens: int) -> tuple[np.ndarray, int]:
        return encode_window(self.encoder, texts, batch_tokens)


class _RayFuture:
    def __init__(self, ref):
        self.ref = ref

    def result(self):
        return _ray().get(self.ref)


class RayPool:
    """A runner (see `encode_workers`) over `workers` Ray actors, windows dealt round-robin."""

    def __init__(self, model: str | Path | None, workers: int, batch_tokens: int, threads: int = 1):
        ray = _ray()
        root = Path(model) if model is not None else DEFAULT_MODEL_DIR
        bundle = ray.put({name: (root / name).read_bytes() for name in BUNDLE_FILES})
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= workers else 0
        actor = ray.remote(num_cpus=threads, num_gpus=gpus)(EncoderActor)
        self.actors = [actor.remote(bundle, threads) for _ in range(workers)]
        self.parallelism = workers
        self.batch_tokens = batch_tokens
        self._next = 0

    def submit(self, texts) -> _RayFuture:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return _RayFuture(actor.encode.remote(list(texts), self.batch_tokens))

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a)


def populate_groups(trained: np.ndarray, groups: Iterable[list[tuple[int, np.ndarray]]],
                    in_flight: int) -> Iterator[np.ndarray]:
    """Populate each group (a list of (first row, fp16 block)) in a Ray task, at most `in_flight` at a time;
    yields the serialized indexes in group order."""
    ray = _ray()
    task = ray.remote(num_cpus=1)(populate_serialized)
    trained_ref = ray.put(trained)
    pending: deque = deque()
    for blocks in groups:
        pending.append(task.remote(trained_ref, [(s, np.asarray(b)) for s, b in blocks]))
        if len(pending) >= in_flight:
            yield ray.get(pending.popleft())
    while pending:
        yield ray.get(pending.popleft())
