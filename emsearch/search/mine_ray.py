"""The Ray path of `mine --ray`: the kNN chunks of both directions searched by Ray actors, the margins and the
one-to-one selection computed on the driver over all of them, as the local run does.

The actors open the indexes from their paths (so the nodes must share the index folders, e.g. over NFS):

- where both sides searched have several FAISS groups (an index of over a million rows, not merged) and go
  through FAISS, a worker per group (more where there are more workers than groups; a share of a CPU each where
  fewer) holds that group alone: each chunk's query vectors go to every group, and the driver merges their
  candidates in group order and re-scores them exactly, as `Index.search_vectors` does over all groups. No
  worker, and not the driver, holds a whole FAISS index in memory;
- otherwise (one group, or a language few enough to scan exactly) each actor holds both indexes and answers
  `knn(direction, start, stop)` with the `knn_chunk` the local run calls.

Either way the output is the local run's, bit for bit where the hardware computes the same floats.
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


class GroupActor:
    """Holds one FAISS group of one index; answers that group's candidates for query vectors."""

    def __init__(self, open_index, path: str, group: int, cfg: dict):
        import faiss

        from emsearch.search.mine_config import MineConfig

        faiss.omp_set_num_threads(1)
        self.cfg = MineConfig(**cfg)
        self.index = open_index(path, model=self.cfg.model, groups=[group])

    def candidates(self, xq: np.ndarray, lang: str) -> tuple[np.ndarray, np.ndarray]:
        return self.index.group_candidates(xq, self.cfg.k + 1, langs=[lang], nprobe=self.cfg.nprobe)


class RaySearcher:
    """A `searcher(direction, bounds)` (see `mine.knn_direction`) over Ray actors: a worker per FAISS group where
    both sides searched have several, else whole-index actors with chunks dealt round-robin; two chunks in flight
    per worker."""

    def __init__(self, src_index, tgt_index, x_rows: np.ndarray, y_rows: np.ndarray, cfg):
        connect(cfg.ray_address)
        ray = require_ray()
        self.cfg, workers = cfg, cfg.workers or cluster_workers()
        self.sides = {"fwd": (src_index, x_rows, tgt_index, cfg.tgt, y_rows),
                      "bwd": (tgt_index, y_rows, src_index, cfg.src, x_rows)}
        open_index = type(src_index).open  # the actors open the indexes as the driver's were (sent by reference)
        self.by_group = all(base.groups > 1 and not base.scans_exactly([lang])
                            for _, _, base, lang, _ in self.sides.values())
        self.actors, self.groups = [], {}  # groups: index path → per group, its workers
        if self.by_group:
            bases = {str(Path(base.path).resolve()): base.groups for _, _, base, _, _ in self.sides.values()}
            replicas = max(workers // sum(bases.values()), 1)
            # as many workers as the cluster has CPUs, or a share of one each where groups outnumber them
            actor = ray.remote(num_cpus=min(1.0, workers / (replicas * sum(bases.values()))))(GroupActor)
            for path, groups in bases.items():
                self.groups[path] = [[actor.remote(open_index, path, g, asdict(cfg)) for _ in range(replicas)]
                                     for g in range(groups)]
                self.actors += [a for replicas_of_g in self.groups[path] for a in replicas_of_g]
            self.in_flight = 2 * replicas
        else:
            paths = [str(Path(index.path).resolve()) for index in (src_index, tgt_index)]
            rows = ray.put(x_rows), ray.put(y_rows)
            actor = ray.remote(num_cpus=1)(KnnActor)
            self.actors = [actor.remote(open_index, *paths, *rows, asdict(cfg)) for _ in range(workers)]
            self.in_flight = 2 * workers

    def __call__(self, direction: str, bounds: list[tuple[int, int]]):
        if self.by_group:
            yield from self._by_group(direction, bounds)
            return

        def submit(item: tuple[int, tuple[int, int]]):
            n, (start, stop) = item
            return self.actors[n % len(self.actors)].knn.remote(direction, start, stop)

        yield from in_order(submit, enumerate(bounds), self.in_flight)

    def _by_group(self, direction: str, bounds: list[tuple[int, int]]):
        """Each chunk's vectors to every group's worker; their candidates merged and re-scored here."""
        from emsearch.search.knn import knn_chunk

        ray = require_ray()
        query, query_rows, base, lang, base_rows = self.sides[direction]
        groups = self.groups[str(Path(base.path).resolve())]

        def submit(item: tuple[int, tuple[int, int]]):
            n, (start, stop) = item
            xq = query.embeddings(query_rows[start:stop])
            ref = ray.put(xq)
            return xq, [replicas[n % len(replicas)].candidates.remote(ref, lang) for replicas in groups]

        def take(submitted):  # one group's candidates fetched at a time, in group order
            xq, refs = submitted
            return knn_chunk(xq, base, lang, base_rows, self.cfg, candidates=(ray.get(r) for r in refs))

        yield from in_order(submit, enumerate(bounds), self.in_flight, take)

    def close(self) -> None:
        ray = require_ray()
        for a in self.actors:
            ray.kill(a)
