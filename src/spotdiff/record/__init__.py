"""What a run leaves behind: results.json (source of truth), the SQLite history index."""
