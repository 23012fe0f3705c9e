"""`EmsearchError`: the base of every error a user can cause and fix (bad input, options, files, indexes).

The CLI and the server catch this class (and OSError for files) and nothing broader, so any other exception is a
bug and shows as one: a traceback, or HTTP 500. It is a ValueError, so code catching ValueError keeps working.
This module imports nothing from emsearch, so every module can subclass it.
"""


class EmsearchError(ValueError):
    """A user-facing error whose message says what to do."""


class ModelLoadError(EmsearchError):
    """A model directory that is missing, incomplete or corrupt."""
