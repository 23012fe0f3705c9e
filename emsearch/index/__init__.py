"""The index side of the pipeline, in build order:

    corpus rows → runners (encode windows) → shards (fp16 .npy) + store (LMDB) → choice (which FAISS index)
    → ivf (train, calibrate) + faiss_io (every FAISS file) → manifest (the typed record of it all)
    → build (the resumable orchestration) → reader (`Index.open(path).search(...)`)
"""

from emsearch.index.manifest import Manifest, resolve_index
from emsearch.index.reader import Hit, Index, IndexOpenError

__all__ = ["Hit", "Index", "IndexOpenError", "Manifest", "resolve_index"]
