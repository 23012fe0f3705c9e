"""The package version: one place, read by the package root, the HTTP API description and pyproject.toml."""

__version__ = "0.1.0"
