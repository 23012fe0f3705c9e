"""Interoperability with the static-model stacks people already use (model2vec, sentence-transformers).

`export` writes an emsearch static model as a model2vec or sentence-transformers folder; `static_model` loads
such a folder as an `Encoder`, so `build-index --model FOLDER` indexes with it. Their packages (the `interop`
extra) are imported only inside the functions that need them.
"""
