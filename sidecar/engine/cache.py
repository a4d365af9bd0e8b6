"""A bounded LRU cache for per-text model outputs (embeddings, scores): cachetools' LRU behind
a lock, since the inference thread and the event loop both use it."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
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


class LocalLRU(Generic[V]):
    """``LRUCache`` for one thread (a model's inference thread): an ordered dict, no lock. A
    search looks up a hundred documents' embeddings at once, and the lock and cachetools' own
    bookkeeping cost more than the lookups."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[bytes, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> V | None:
        """Return the cached value and mark it recent, or None."""
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: bytes, value: V) -> None:
        """Store a value, evicting the least recent entries past capacity."""
        if self.capacity <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
