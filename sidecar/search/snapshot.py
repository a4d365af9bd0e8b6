"""One config compiled for serving: each route with its rewriters, scorer, breaker and
calibration, immutable. A request holds the snapshot it started with to its end, so a hot
reload in the middle of a search never pairs an old route with a new rewriter or model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sidecar.config import Config, RouteConfig
from sidecar.engine.calibration import Calibration, apply
from sidecar.engine.circuit import CircuitBreaker
from sidecar.engine.protocol import ModelTimeout, Overloaded, Scored, Scorer, ScoreRequest
from sidecar.language import Reads
from sidecar.rewrite.llm import LlmRewriter
from sidecar.rewrite.rules import Rewriter
from sidecar.rewrite.text import scrub
from sidecar.search.paging import FallbackMemory
from sidecar.search.routes import match_route

if TYPE_CHECKING:
    from sidecar.search.serve import Lab


@dataclass(frozen=True)
class ServedModel:
    """A model entry as one snapshot serves it: its scorer (the engine's batcher or remote
    client), circuit breaker and calibration. (The entry is ``models.NAME`` of the config; its
    weights are the entry's ``model``: a hub id or a path.)"""

    name: str
    scorer: Scorer
    breaker: CircuitBreaker
    calibration: Calibration | None
    reads: Reads = field(default_factory=lambda: Reads(None))  # the languages it reads

    async def score(self, request: ScoreRequest) -> list[Scored]:
        """Calibrated scores of the documents against each query, as one piece of work, within
        the request's ``timeout_s``: ModelTimeout past it, Overloaded when the queue cannot
        make it, CircuitOpen while the breaker skips the model."""
        # lone surrogates: valid JSON escapes, but no tokenizer or server takes them
        queries = tuple(scrub(q) for q in request.queries)
        documents = request.documents
        if not "".join(documents).isascii():  # one pass over the window in C, not a call a text
            documents = tuple(scrub(d) for d in documents)
        probe = self.breaker.before()
        try:
            timed = await self.scorer.score(replace(request, queries=queries, documents=documents))
        except ModelTimeout:
            # a serving engine that keeps missing its budget makes every search wait it out:
            # counted as a failure, as Envoy's outlier detection counts timeouts (a local model's
            # timeout is its queue under load, which the overload fallback already sheds)
            if self.scorer.backend is None:
                self.breaker.failure()
            else:
                self.breaker.neutral(probe)
            raise
        except (Overloaded, asyncio.CancelledError):
            self.breaker.neutral(probe)
            raise
        except Exception:
            self.breaker.failure()
            raise
        self.breaker.success()
        for t in timed:
            if len(t.scores) != len(documents):
                raise ValueError(
                    f"model {self.name!r} returned {len(t.scores)} scores for {len(documents)} documents"
                )
        return [replace(t, scores=apply(self.calibration, t.scores)) for t in timed]


@dataclass(frozen=True)
class CompiledRoute:
    """A route ready to serve: its config, rewriters and model, known by its name."""

    name: str
    config: RouteConfig
    model: ServedModel
    rewriter: Rewriter | None = None
    llm: LlmRewriter | None = None
    lab: Lab | None = None  # the route's online experiment
    models: Mapping[str, ServedModel] = field(default_factory=dict)  # every model: an arm may use another
    # its searches that fell back, whose later pages continue in the cluster's order
    paging: FallbackMemory = field(default_factory=FallbackMemory)


class Snapshot:
    """The config and its compiled routes; ``held`` counts the requests still using it."""

    def __init__(
        self, config: Config, routes: Sequence[CompiledRoute], models: dict[str, ServedModel]
    ) -> None:
        self.config = config
        self.routes = tuple(routes)
        self.models = models
        self._users = 0
        self._idle: asyncio.Event | None = None

    def match(self, indices: Sequence[str]) -> CompiledRoute | None:
        """The first route whose patterns cover every index named, or None."""
        i = match_route([r.config for r in self.routes], indices)
        return None if i is None else self.routes[i]

    def route(self, name: str) -> CompiledRoute | None:
        """The route of that name, or None."""
        return next((r for r in self.routes if r.name == name), None)

    @contextlib.contextmanager
    def held(self) -> Iterator[Snapshot]:
        """Use this snapshot for the block."""
        self._users += 1
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0 and self._idle is not None:
                self._idle.set()

    async def released(self, timeout_s: float) -> bool:
        """Wait until no request holds it (at most ``timeout_s``); False when some still do."""
        if self._users == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True
