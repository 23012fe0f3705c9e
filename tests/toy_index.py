"""A real toy index for the query-side tests: synthetic German/English pairs plus one-sided distractors.

Rows: `deu` sentences (ids de-0..), their `eng` translations (en-0..), then `n_noise` untranslated sentences on
each side (de-x0.., en-x0..). Built by `build_index` with small shards, so every search spans several shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import synthetic_pairs
from emsearch.index.build import BuildConfig, build_index


@dataclass(frozen=True)
class ToyIndex:
    path: Path
    deu: list[str]  # deu[i] translates eng[i]
    eng: list[str]
    deu_noise: list[str]
    eng_noise: list[str]


def build_toy_index(tmp: Path, model: Path, n: int = 150, n_noise: int = 60, shard_size: int = 64,
                    extra: tuple[tuple[str, str, str], ...] = (), **options) -> ToyIndex:
    """`extra` adds rows (id, lang, text) at the end; `options` are more BuildConfig fields."""
    eng, deu = synthetic_pairs(n, seed=31)
    eng_noise, _ = synthetic_pairs(n_noise, seed=32)
    _, deu_noise = synthetic_pairs(n_noise, seed=33)
    rows = ([(f"de-{i}", "deu", t) for i, t in enumerate(deu)] + [(f"en-{i}", "eng", t) for i, t in enumerate(eng)]
            + [(f"de-x{i}", "deu", t) for i, t in enumerate(deu_noise)]
            + [(f"en-x{i}", "eng", t) for i, t in enumerate(eng_noise)] + list(extra))
    ids, langs, texts = map(list, zip(*rows))
    corpus = tmp / "corpus.parquet"
    pq.write_table(pa.table({"id": ids, "lang": langs, "text": texts, "source": ["toy"] * len(rows)}), corpus)
    build_index(BuildConfig(input=str(corpus), out=str(tmp / "index"), model=str(model), id_column="id",
                            shard_size=shard_size, **options))
    return ToyIndex(tmp / "index", deu, eng, deu_noise, eng_noise)
