"""Bounded LRU caches for per-text model outputs (embeddings, scores): an ordered dict (its
operations are C), for one thread or behind a lock where the inference thread and the event loop
share it. A search looks up a hundred documents at once, so both take them in one call."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")


def text_key(namespace: str, text: str) -> bytes:
    """A compact cache key for a text under a model namespace."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16, person=namespace.encode()[:16]).digest()


class LocalLRU(Generic[V]):
    """Least-recently-used cache bounded by entry count (0: caches nothing), for one thread (a
    model's inference thread): no lock."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[bytes, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> V | None:
        """Return the cached value and mark it recent, or None."""
        return self.get_many((key,))[0]

    def get_many(self, keys: Sequence[bytes]) -> list[V | None]:
        """Each key's value (None where none is), the found ones marked recent."""
        data = self._data
        found = [data.get(k) for k in keys]
        touch = data.move_to_end
        hits = 0
        for k, v in zip(keys, found, strict=True):
            if v is not None:
                touch(k)
                hits += 1
        self.hits += hits
        self.misses += len(keys) - hits
        return found

    def put(self, key: bytes, value: V) -> None:
        """Store a value, evicting the least recent entries past capacity."""
        self.put_many(((key, value),))

    def put_many(self, items: Iterable[tuple[bytes, V]]) -> None:
        """Store each value, evicting the least recent entries past capacity."""
        if self.capacity <= 0:
            return
        data = self._data
        touch = data.move_to_end
        for k, v in items:
            if k in data:
                touch(k)
            data[k] = v
        while len(data) > self.capacity:
            data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class LRUCache(LocalLRU[V]):
    """``LocalLRU`` behind a lock: safe across threads (one acquisition for a whole lookup)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[bytes]) -> list[V | None]:
        with self._lock:
            return super().get_many(keys)

    def put_many(self, items: Iterable[tuple[bytes, V]]) -> None:
        with self._lock:
            super().put_many(items)
