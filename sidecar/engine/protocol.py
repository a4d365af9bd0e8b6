"""The small protocols every rerank backend implements."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sidecar.engine.stats import BatchStats


class Overloaded(Exception):
    """The model's queue is too long for this request's budget."""


class ModelTimeout(Exception):
    """Scoring did not finish within the request's budget."""


# One model input: token ids, and token type ids where the model has them.
Encoded = tuple[list[int], list[int] | None]


@dataclass(frozen=True)
class Scored:
    """A model's scores and where the time went: ``queue_ms`` waiting for the model (or the
    server), ``model_ms`` computing; None when every score came from the cache."""

    scores: list[float]
    queue_ms: float | None = None
    model_ms: float | None = None
    batch: int | None = None  # the forward pass it shared: pairs (or queries, a bi-encoder's)
    tokens: int | None = None  # the tokens of its own pairs that the model computed


@runtime_checkable
class Backend(Protocol):
    """A synchronous reranker; called only on its model's inference thread."""

    name: str

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        """Return one relevance score per document, higher is better."""
        ...

    def count_tokens(self, text: str) -> int:
        """Return how many tokens the model sees for this text."""
        ...

    def warm_up(self) -> None:
        """Run one small inference so the first real request pays no start-up cost."""
        ...


@runtime_checkable
class ManyQueryBackend(Backend, Protocol):
    """A backend that scores documents against several queries at once (the bi-encoder: the
    queries in one forward pass, one matrix product)."""

    def score_many(
        self, queries: Sequence[str], documents: Sequence[str], instruction: str | None = None
    ) -> list[list[float]]:
        """Per query, one score per document."""
        ...


@runtime_checkable
class GroupBackend(ManyQueryBackend, Protocol):
    """A backend that scores several searches in one pass (the bi-encoder: every query and
    document of all of them embedded together), so concurrent searches share forward passes."""

    def score_group(
        self, requests: Sequence[tuple[Sequence[str], Sequence[str], str | None]]
    ) -> list[list[list[float]]]:
        """Per request (queries, documents, instruction): per query, one score per document."""
        ...


@runtime_checkable
class PairBackend(Backend, Protocol):
    """A backend that scores (query, document) pairs one input each, so pairs of many
    searches can share a forward pass: the batcher calls ``encode`` and ``forward``."""

    max_length: int

    def encode(self, query: str, documents: Sequence[str], instruction: str | None) -> list[list[Encoded]]:
        """The model inputs of each document: one, or one per chunk of a long document."""
        ...

    def forward(self, batch: Sequence[Encoded]) -> list[float]:
        """Scores of a batch of inputs, in order."""
        ...


@dataclass(frozen=True)
class ScoreRequest:
    """One piece of work for a model, the engine's one entry (``Scorer.score``): the documents
    against each query (a search's query and its variants: one queue wait, their pairs batched
    together), with the instruction, within ``timeout_s``."""

    queries: tuple[str, ...]
    documents: tuple[str, ...]
    instruction: str | None = None
    timeout_s: float = 60.0

    @classmethod
    def of(
        cls,
        queries: Sequence[str],
        documents: Sequence[str],
        instruction: str | None = None,
        timeout_s: float = 60.0,
    ) -> ScoreRequest:
        """A request of these queries and documents (any sequences)."""
        return cls(tuple(queries), tuple(documents), instruction, timeout_s)


class EachQuery:
    """``score`` for a scorer that scores one query at a time (``score_one``): the queries at
    once, the first failure cancelling the others (their queued work leaves the queue)."""

    async def score_one(
        self, query: str, documents: Sequence[str], instruction: str | None, timeout_s: float
    ) -> Scored:
        raise NotImplementedError

    async def score(self, request: ScoreRequest) -> list[Scored]:
        """Each query's scores of the request's documents."""
        r = request
        if len(r.queries) == 1:
            return [await self.score_one(r.queries[0], r.documents, r.instruction, r.timeout_s)]
        tasks = [
            asyncio.ensure_future(self.score_one(q, r.documents, r.instruction, r.timeout_s))
            for q in r.queries
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            raise


class Scorer(Protocol):
    """A model as the service uses it, on the event loop: a local backend behind its batcher,
    or a remote serving engine. ``score`` is its one entry: it raises ModelTimeout past the
    request's ``timeout_s`` and Overloaded when the work cannot start in time."""

    name: str

    @property
    def stats(self) -> BatchStats:
        """The model's running figures."""
        ...

    @property
    def backend(self) -> Backend | None:
        """The local backend, once loaded; None for a remote model."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model."""
        ...

    async def start(self) -> Any:
        """Load the model, or open the connections."""
        ...

    async def aclose(self) -> None:
        """Finish queued work and release the model or the connections."""
        ...

    async def score(self, request: ScoreRequest) -> list[Scored]:
        """Per query of the request, one score per document (higher is better) with the time it
        waited and the time the model took."""
        ...

    def info(self) -> dict[str, Any]:
        """What the health endpoint shows of this model."""
        ...
