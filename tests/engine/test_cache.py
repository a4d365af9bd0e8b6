"""The LRU cache behind the score and embedding caches."""

from __future__ import annotations

import threading

from sidecar.engine.cache import LRUCache, text_key


def test_the_least_recently_used_entry_leaves_first() -> None:
    cache: LRUCache[int] = LRUCache(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1  # a is recent now
    cache.put(b"c", 3)
    assert (cache.get(b"a"), cache.get(b"b"), cache.get(b"c"), len(cache)) == (1, None, 3, 2)
    off: LRUCache[int] = LRUCache(0)
    off.put(b"a", 1)
    assert off.get(b"a") is None and len(off) == 0


def test_threads_share_it_without_losing_the_bound() -> None:
    cache: LRUCache[int] = LRUCache(100)

    def work(n: int) -> None:
        for i in range(2000):
            cache.put(text_key("t", f"{n}-{i}"), i)
            cache.get(text_key("t", f"{n}-{i // 2}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 100
