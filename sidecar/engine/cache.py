"""A bounded LRU cache for per-text model outputs (embeddings, scores): cachetools' LRU behind
a lock, since the inference thread and the event loop both use it."""

from __future__ import annotations

import hashlib
import threading
from typing import Generic, TypeVar

from cachetools import LRUCache as _LRU

V = TypeVar("V")


def text_key(namespace: str, text: str) -> bytes:
    """A compact cache key for a text under a model namespace."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16, person=namespace.encode()[:16]).digest()


class LRUCache(Generic[V]):
    """Least-recently-used cache bounded by entry count (0: caches nothing); safe across threads."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: _LRU[bytes, V] | None = _LRU(maxsize=capacity) if capacity > 0 else None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> V | None:
        """Return the cached value and mark it recent, or None."""
        with self._lock:
            value = self._data.get(key) if self._data is not None else None
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: bytes, value: V) -> None:
        """Store a value, evicting the least recent entries past capacity."""
        if self._data is None:
            return
        with self._lock:
            self._data[key] = value

    def __len__(self) -> int:
        return len(self._data) if self._data is not None else 0
