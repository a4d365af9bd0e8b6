"""The score cache in front of any scorer: (model, instruction, query, document) -> score."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence

from sidecar.engine.cache import LRUCache
from sidecar.engine.protocol import Scored
from sidecar.engine.stats import BatchStats


def score_key(model: str, instruction: str | None, query: str, document: str) -> bytes:
    """The score cache key: model, instruction, query and document, hashed."""
    h = hashlib.blake2b(digest_size=16)
    for part in (model, instruction or "", query, document):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


async def cached_scores(
    cache: LRUCache[float],
    stats: BatchStats,
    model: str,
    query: str,
    documents: Sequence[str],
    instruction: str | None,
    fetch: Callable[[list[str]], Awaitable[Scored]],
) -> Scored:
    """Scores of the documents: cached ones at once, the others from ``fetch`` (then cached),
    with ``fetch``'s timings (none when the cache had them all)."""
    keys = [score_key(model, instruction, query, d) for d in documents]
    scores: list[float | None] = [cache.get(k) for k in keys]
    missing = [i for i, s in enumerate(scores) if s is None]
    stats.cache_hits += len(documents) - len(missing)
    stats.cache_misses += len(missing)
    timed = Scored([])
    if missing:
        timed = await fetch([documents[i] for i in missing])
        fresh = timed.scores
        if len(fresh) != len(missing):
            raise ValueError(f"model {model!r} returned {len(fresh)} scores for {len(missing)} documents")
        for i, s in zip(missing, fresh, strict=True):
            scores[i] = s
            cache.put(keys[i], s)
    done = [s if s is not None else float("-inf") for s in scores]
    return Scored(done, timed.queue_ms, timed.model_ms)
