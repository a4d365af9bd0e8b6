"""The results that the core's stages hand on (sidecar/search/pipeline.py), frozen: what the
event, the page and the headers are made from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.config import RouteConfig
from sidecar.events.event import BaselineHit
from sidecar.search.outcome import Outcome
from sidecar.search.snapshot import CompiledRoute


@dataclass(frozen=True)
class Window:
    """The cluster's window as it came (the page built from it rewrites the hits' ``_score``):
    its hits, each one's text ("": none, the hit is not sent to the model), their ids and the
    cluster's scores, and the event's record of it."""

    hits: list[dict[str, Any]]
    texts: list[str]
    ids: list[Any]
    cluster: list[float | None]  # the cluster's _score of each hit (None where it gave none)
    baseline: list[BaselineHit]

    @property
    def missing(self) -> list[int]:
        """The hits with no text to score."""
        return [i for i, t in enumerate(self.texts) if not t]


@dataclass(frozen=True)
class Scoring:
    """What the model made of the window: the route that scored it (with its language's model),
    the query's language, one score per hit (None: the cluster's order stands), each query's
    scores, and the outcome so far."""

    compiled: CompiledRoute
    route: RouteConfig
    outcome: Outcome
    language: str | None
    per_query: list[list[float]] | None = None
    scores: list[float] | None = None
    queue_ms: float | None = None
    model_ms: float | None = None
