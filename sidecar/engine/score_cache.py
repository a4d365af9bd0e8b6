"""The score cache, a wrapper around any scorer: (model, instruction, query, document) -> score."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, cast

from sidecar.config import ModelConfig
from sidecar.engine.cache import LRUCache
from sidecar.engine.protocol import Backend, Scored, Scorer, ScoreRequest
from sidecar.engine.stats import BatchStats


class SharedScores(Protocol):
    """A tier of scores shared by the fleet under this sidecar's LRU (the fleet's Valkey/Redis
    cache is one): read in one round trip, written off the search path, never an error."""

    async def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> list[float | None]:
        """The scores held for ``keys`` (None where none is)."""
        ...

    def put_many(self, fingerprint: str, items: Sequence[tuple[bytes, float]]) -> None:
        """Keep these scores, in the background."""
        ...


_SETTINGS_NOT_SCORES = frozenset(
    {
        "cache_size",
        "max_queue",
        "circuit_failures",
        "circuit_cooldown_s",
        "device",
        "batch_tokens",
        "max_wait_ms",
        "batch_size",
        "embedding_store",
        "url",
        "urls",
        "api_key_env",
        "headers",
        "headers_env",
        "max_concurrency",
        "request_timeout_s",
        "retries",
        "cooldown_s",
        "max_docs_per_request",
    }
)


def model_fingerprint(spec: ModelConfig) -> str:
    """A hash of what decides a model's raw scores (weights, backend, lengths, chunking, ...),
    not of where or how fast it runs: the shared tier keeps one model's scores apart from another's."""
    data = spec.model_dump_json(exclude=set(_SETTINGS_NOT_SCORES) & set(type(spec).model_fields))
    return hashlib.blake2b(data.encode(), digest_size=6).hexdigest()


def _encoded(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(8, "little") + data


def score_key(model: str, instruction: str | None, query: str, document: str) -> bytes:
    """The score cache key: model, instruction, query and document, hashed."""
    return score_keys(model, instruction, (query,), (document,))[0][0]


def score_keys(
    model: str, instruction: str | None, queries: Sequence[str], documents: Sequence[str]
) -> list[list[bytes]]:
    """``score_key`` of each query with each document (a row a query), each part encoded once."""
    docs = [_encoded(d) for d in documents]
    rows = []
    for query in queries:
        h = hashlib.blake2b(_encoded(model) + _encoded(instruction or "") + _encoded(query), digest_size=16)
        row = []
        for doc in docs:
            one = h.copy()
            one.update(doc)
            row.append(one.digest())
        rows.append(row)
    return rows


class CachedScorer:
    """A scorer whose scores are kept in an LRU of ``size`` entries: cached documents are
    answered at once, only the others go to the inner scorer (a local batcher or a remote
    engine). Hits and misses are counted in the inner scorer's stats."""

    def __init__(
        self, inner: Scorer, size: int, shared: SharedScores | None = None, fingerprint: str = ""
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.cache: LRUCache[float] = LRUCache(size)
        self.shared = shared  # the fleet's tier under this one (Valkey/Redis)
        self.fingerprint = fingerprint

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

    async def score(self, request: ScoreRequest) -> list[Scored]:
        """Each query's scores: the cache's where it has them; the documents any query misses go
        to the inner scorer once, for every query (one request), and are cached; its timings
        (none when the cache had them all)."""
        queries, documents, instruction = request.queries, request.documents, request.instruction
        keys = score_keys(self.name, instruction, queries, documents)
        cached: list[list[float | None]] = [self.cache.get_many(row) for row in keys]
        if self.shared is not None:  # what this sidecar lacks, from the fleet's tier in one round trip
            holes = [(j, i) for j, row in enumerate(cached) for i, s in enumerate(row) if s is None]
            found = await self.shared.get_many(self.fingerprint, [keys[j][i] for j, i in holes])
            shared: list[tuple[bytes, float]] = []
            for (j, i), s in zip(holes, found, strict=True):
                if s is not None:
                    cached[j][i] = s
                    shared.append((keys[j][i], s))
            self.cache.put_many(shared)
        missing = [i for i, column in enumerate(zip(*cached, strict=True)) if None in column]
        looked = len(queries) * len(documents)
        misses = sum(row.count(None) for row in cached)
        self.stats.cache_hits += looked - misses
        self.stats.cache_misses += misses
        fresh: list[Scored] = [Scored([]) for _ in queries]
        if missing:
            fresh = await self.inner.score(replace(request, documents=tuple(documents[i] for i in missing)))
            new: list[tuple[bytes, float]] = []
            for j, timed in enumerate(fresh):
                if len(timed.scores) != len(missing):
                    got, wanted = len(timed.scores), len(missing)
                    raise ValueError(f"model {self.name!r} returned {got} scores for {wanted} documents")
                row, row_keys = cached[j], keys[j]
                for i, s in zip(missing, timed.scores, strict=True):
                    if row[i] is None:
                        new.append((row_keys[i], s))
                    row[i] = s
            self.cache.put_many(new)
            if self.shared is not None:
                self.shared.put_many(self.fingerprint, new)
        # every hole is filled now: the rows are floats
        return [replace(t, scores=row) for row, t in zip(cast(list[list[float]], cached), fresh, strict=True)]
