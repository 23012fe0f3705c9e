"""The index side of the pipeline, in build order:

    corpus rows → runners (encode windows) → shards (fp16 .npy) + store (LMDB) → choice (which FAISS index)
    → ivf (train, calibrate) + faiss_io (every FAISS file) → manifest (the typed record of it all)
    → build (the resumable orchestration) → reader (`Index.open(path).search(...)`)
"""

from emsearch.lazy import lazy_exports

__all__ = ["Hit", "Index", "IndexOpenError", "Manifest", "resolve_index"]
__getattr__ = lazy_exports(__name__, {
    "Hit": "emsearch.index.reader",
    "Index": "emsearch.index.reader",
    "IndexOpenError": "emsearch.index.reader",
    "Manifest": "emsearch.index.manifest",
    "resolve_index": "emsearch.index.manifest",
})
