"""What `emsearch mine` mines and how: a config that checks and normalises itself when made, below the mining
code and its Ray actors, which both hold one."""

from __future__ import annotations

import math
from dataclasses import dataclass

from emsearch.errors import EmsearchError
from emsearch.languages import normalize_lang
from emsearch.search.margin import MARGINS, MODES, check_choice
from emsearch.search.threshold import AUTO, MODEL


@dataclass(frozen=True)
class MineConfig:
    """What to mine and how; checked and normalised when made, so every holder has a valid one."""

    src: str  # language codes, any accepted form; normalised here
    tgt: str
    k: int = 4
    margin: str = "ratio"
    mode: str = "max"
    threshold: float | str = AUTO  # AUTO: fitted to the corpus's margins; MODEL: the model bundle's; or a number
    min_precision: float | None = None  # the lowest threshold the fit estimates this precise (implies AUTO)
    nprobe: int | None = None  # IVF lists visited per query; None: the index's calibrated default
    chunk: int = 8192  # query rows per search call
    ray: bool = False  # kNN chunks searched by Ray actors (emsearch.search.mine_ray)
    ray_address: str | None = None  # cluster to join; None: RAY_ADDRESS, else a local instance
    workers: int = 0  # Ray actors; 0: one per cluster CPU
    model: str | None = None  # the model Ray actors open the indexes with; None: the one each index records

    def __post_init__(self) -> None:
        check_choice(self.margin, MARGINS, "margin")
        check_choice(self.mode, MODES, "retrieval mode")
        if not 1 <= self.k <= 100:
            raise EmsearchError(f"k must be from 1 to 100 (4 is usual for margins), got {self.k}")
        if self.chunk < 1:
            raise EmsearchError(f"chunk must be positive, got {self.chunk}")
        if self.nprobe is not None and self.nprobe < 1:
            raise EmsearchError(f"nprobe must be positive, got {self.nprobe}")
        threshold = self.threshold
        if isinstance(threshold, str) and threshold not in (AUTO, MODEL):
            try:
                threshold = float(threshold)
            except ValueError:
                raise EmsearchError(f"the threshold must be a number, {AUTO} or {MODEL}, got {threshold!r}") from None
        if threshold is None or (not isinstance(threshold, str) and not math.isfinite(threshold)):
            raise EmsearchError(f"the threshold must be a finite number, {AUTO} or {MODEL}, got {threshold}")
        if self.min_precision is not None and not 0 < self.min_precision < 1:
            raise EmsearchError(f"--min-precision must be between 0 and 1 (e.g. 0.95), got {self.min_precision}")
        if threshold != AUTO and self.min_precision is not None:
            raise EmsearchError("give --threshold or --min-precision, not both")
        if self.min_precision is not None:
            threshold = AUTO
        if self.workers < 0:
            raise EmsearchError(f"workers must be 0 (one per CPU) or more, got {self.workers}")
        for name, value in (("threshold", threshold), ("src", normalize_lang(self.src)),
                            ("tgt", normalize_lang(self.tgt))):
            object.__setattr__(self, name, value)  # frozen: normalised once, here
