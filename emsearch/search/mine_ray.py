"""The Ray path of `mine --ray`: the kNN chunks of both directions searched by Ray actors, the margins and the
one-to-one selection computed on the driver over all of them, as the local run does.

Each actor opens the two indexes from their paths once (so the nodes must share the index folders, e.g. over NFS)
and answers `knn(direction, start, stop)` with the same `knn_chunk` the local run calls on the same chunk of
query rows: the output is the local run's, bit for bit where the hardware computes the same floats.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from emsearch.index.ray_runners import cluster_workers, connect, in_order, require_ray


class KnnActor:
    """Holds the two indexes open; the rows of each side and the config come once, through the object store."""

    def __init__(self, open_index, src_path: str, tgt_path: str, x_rows: np.ndarray, y_rows: np.ndarray, cfg: dict):
        import faiss

        from emsearch.search.mine_config import MineConfig

        faiss.omp_set_num_threads(1)  # one CPU per actor, as Ray schedules it
        self.cfg = MineConfig(**cfg)
        self.src = open_index(src_path, model=self.cfg.model)
        self.tgt = self.src if tgt_path == src_path else open_index(tgt_path, self.src.encoder)
        self.sides = {"fwd": (self.src, x_rows, self.tgt, self.cfg.tgt, y_rows),
                      "bwd": (self.tgt, y_rows, self.src, self.cfg.src, x_rows)}

    def knn(self, direction: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        from emsearch.search.knn import knn_chunk

        query, query_rows, base, base_lang, base_rows = self.sides[direction]
        return knn_chunk(query.embeddings(query_rows[start:stop]), base, base_lang, base_rows, self.cfg)


class RaySearcher:
    """A `searcher(direction, bounds)` (see `mine.knn_direction`) over Ray actors, chunks dealt round-robin, two in
    flight per actor."""

    def __init__(self, src_index, tgt_index, x_rows: np.ndarray, y_rows: np.ndarray, cfg):
        connect(cfg.ray_address)
        ray = require_ray()
        workers = cfg.workers or cluster_workers()
        paths = [str(Path(index.path).resolve()) for index in (src_index, tgt_index)]
        rows = ray.put(x_rows), ray.put(y_rows)
        actor = ray.remote(num_cpus=1)(KnnActor)
        # The actors open the indexes as the driver's were opened (`Index.open`, sent by reference).
        self.actors = [actor.remote(type(src_index).open, *paths, *rows, asdict(cfg)) for _ in range(workers)]
        self.in_flight = 2 * workers

    def __call__(self, direction: str, bounds: list[tuple[int, int]]):
        def submit(item: tuple[int, tuple[int, int]]):
            n, (start, stop) = item
            return self.actors[n % len(self.actors)].knn.remote(direction, start, stop)

        yield from in_order(submit, enumerate(bounds), self.in_flight)

    def close(self) -> None:
        ray = require_ray()
        for a in self.actors:
            ray.kill(a)
