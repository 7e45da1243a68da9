"""Rendering results: terminal tables (rich), report.html and PNG plots (matplotlib)."""
