"""Is a built index whole? Every file against what the manifest recorded: the shards' SHA-256, the sentence store
(its file long enough for its last commit, its row count), the FAISS files and their vector count.

`emsearch verify` prints the answer; `build-index` asks it before saying "up to date", so a rerun repairs what it
finds (a damaged store is re-filled from the input, a bad shard re-encoded, and the FAISS index rebuilt when its
vectors changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emsearch.errors import EmsearchError
from emsearch.index.faiss_io import load_faiss
from emsearch.index.manifest import Manifest
from emsearch.index.shards import ShardedEmbeddings, shard_is_valid
from emsearch.index.store import Store, store_damage

@dataclass
class Verdict:
    """What was checked and what is wrong (each problem one line naming the file); whole when no problem."""

    checked: dict[str, int] = field(default_factory=dict)  # what → how many
    problems: list[str] = field(default_factory=list)
    store_damaged: bool = False
    faiss_damaged: bool = False

    @property
    def whole(self) -> bool:
        return not self.problems


def verify_index(out: Path, manifest: Manifest) -> Verdict:
    """Check the files of a complete build in `out` against `manifest`."""
    verdict = Verdict()
    bad_shards = [s.file for s in manifest.shards if not shard_is_valid(out, s)]
    verdict.checked["shards"] = len(manifest.shards)
    verdict.problems += [f"{out / f}: missing, or its SHA-256 is not the recorded one" for f in bad_shards]

    damage = store_damage(out / "store")
    if damage is None:
        store = Store.open(out / "store")
        try:
            rows = len(store)
        finally:
            store.close()
        if rows != manifest.counts.rows:
            damage = f"{out / 'store'} holds {rows:,} rows, the manifest {manifest.counts.rows:,}"
    verdict.checked["store rows"] = manifest.counts.rows
    if damage is not None:
        verdict.problems.append(damage)
        verdict.store_damaged = True

    info = manifest.index
    if info is not None and info.params.kind != "flat" and not bad_shards:
        try:
            indexes = load_faiss(out, info, ShardedEmbeddings(out, manifest.shards, manifest.model.dim,
                                                                  centre=info.centre))
        except (EmsearchError, RuntimeError) as e:  # RuntimeError: faiss could not read a file
            verdict.problems.append(f"{out}: FAISS index unreadable ({' '.join(str(e).split())})")
            verdict.faiss_damaged = True
        else:
            vectors = sum(ix.ntotal for ix in indexes)
            verdict.checked["faiss vectors"] = vectors
            if vectors != manifest.counts.rows:
                verdict.problems.append(f"{out / 'faiss'}: {vectors:,} vectors for {manifest.counts.rows:,} rows")
                verdict.faiss_damaged = True
    return verdict
