"""Document embeddings kept on disk (SQLite), so restarts and repeated evaluations skip the model."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_CHUNK = 500  # keys per SELECT: under SQLite's variable limit


class EmbeddingStore:
    """float32 vectors by key in one SQLite file; a connection per thread (the inference thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.failed = False

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
            self._local.db = db
        return db

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray[Any, Any]]:
        """The stored vectors among ``keys``; a store that cannot be read gives none."""
        if self.failed or not keys:
            return {}
        out: dict[bytes, np.ndarray[Any, Any]] = {}
        try:
            db = self._db()
            for i in range(0, len(keys), _CHUNK):
                chunk = list(keys[i : i + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, vec in db.execute(f"SELECT key, vec FROM embeddings WHERE key IN ({marks})", chunk):
                    out[bytes(key)] = np.frombuffer(bytes(vec), dtype=np.float32).copy()
        except sqlite3.Error as e:
            self._fail(e)
        return out

    def put(self, items: Sequence[tuple[bytes, np.ndarray[Any, Any]]]) -> None:
        """Store vectors; a store that cannot be written is logged once and then left alone."""
        if self.failed or not items:
            return
        try:
            db = self._db()
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO embeddings (key, vec) VALUES (?, ?)",
                    [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items],
                )
        except sqlite3.Error as e:
            self._fail(e)

    def _fail(self, e: sqlite3.Error) -> None:
        self.failed = True
        log.warning("embedding store %s unusable, going on without it: %s", self.path, e)
