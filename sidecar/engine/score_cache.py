"""The score cache, a wrapper around any scorer: (model, instruction, query, document) -> score."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sidecar.engine.cache import LRUCache
from sidecar.engine.protocol import Backend, Scored, Scorer, ScoresFromTimed
from sidecar.engine.stats import BatchStats


def score_key(model: str, instruction: str | None, query: str, document: str) -> bytes:
    """The score cache key: model, instruction, query and document, hashed."""
    h = hashlib.blake2b(digest_size=16)
    for part in (model, instruction or "", query, document):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


class CachedScorer(ScoresFromTimed):
    """A scorer whose scores are kept in an LRU of ``size`` entries: cached documents are
    answered at once, only the others go to the inner scorer (a local batcher or a remote
    engine). Hits and misses are counted in the inner scorer's stats."""

    def __init__(self, inner: Scorer, size: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.cache: LRUCache[float] = LRUCache(size)

    @property
    def stats(self) -> BatchStats:
        return self.inner.stats

    @property
    def backend(self) -> Backend | None:
        return self.inner.backend

    @property
    def queue_depth(self) -> int:
        return self.inner.queue_depth

    async def start(self) -> Any:
        return await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def info(self) -> dict[str, Any]:
        return self.inner.info() | {"cache_entries": len(self.cache)}

    async def score_timed(
        self, query: str, documents: Sequence[str], instruction: str | None, timeout_s: float
    ) -> Scored:
        """Scores of the documents: cached ones at once, the others from the inner scorer (then
        cached), with its timings (none when the cache had them all)."""
        keys = [score_key(self.name, instruction, query, d) for d in documents]
        scores: list[float | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, s in enumerate(scores) if s is None]
        self.stats.cache_hits += len(documents) - len(missing)
        self.stats.cache_misses += len(missing)
        timed = Scored([])
        if missing:
            timed = await self.inner.score_timed(
                query, [documents[i] for i in missing], instruction, timeout_s
            )
            fresh = timed.scores
            if len(fresh) != len(missing):
                raise ValueError(
                    f"model {self.name!r} returned {len(fresh)} scores for {len(missing)} documents"
                )
            for i, s in zip(missing, fresh, strict=True):
                scores[i] = s
                self.cache.put(keys[i], s)
        done = [s if s is not None else float("-inf") for s in scores]
        return Scored(done, timed.queue_ms, timed.model_ms)
