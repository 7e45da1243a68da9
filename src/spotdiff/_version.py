"""The package version, in a module of its own so that any module can read it without importing
the package root (which re-exports the API, and with it the whole parent side)."""

__version__ = "0.1.0"
