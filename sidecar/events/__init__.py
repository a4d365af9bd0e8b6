"""Per-search records: ring buffer, SQLite sink, live subscribers."""
