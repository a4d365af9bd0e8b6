"""One search's event record: started with the request (``new_event``), filled once from the
stages' results (``searched``): what came in, what the cluster gave, what the model made of it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import RouteConfig
from sidecar.events.event import BaselineHit, Page, RankedHit, SearchEvent, VariantRecord
from sidecar.search.plan import SearchPlan
from sidecar.search.policy import Decision
from sidecar.search.serve import Served, page_credit
from sidecar.search.stages import Scoring, Window


@dataclass(frozen=True)
class Ubi:
    """The UBI query id a page was served under, the client's id, and the ids of the page."""

    query_id: str
    client_id: str | None
    served: list[Any]


def new_event(index: str | None, headers: Mapping[str, str]) -> SearchEvent:
    """The start of a record; only ``X-Rerank*`` request headers are kept, never credentials."""
    return SearchEvent(
        id=uuid.uuid4().hex,
        time=time.time(),
        index=index or "_all",
        headers={k: v for k, v in headers.items() if k.startswith("x-rerank")},
    )


def page(from_: int, size: int) -> Page:
    """The client's page."""
    return Page.model_validate({"from": from_, "size": size})


def baseline(ids: Sequence[Any], scores: Sequence[float | None], titles: Sequence[str]) -> list[BaselineHit]:
    """The window in the cluster's order: id, the cluster's score, rank, a short title."""
    return [
        BaselineHit(rank, i, None if s is None else float(s), t[:120])
        for rank, (i, s, t) in enumerate(zip(ids, scores, titles, strict=True), 1)
    ]


def final(
    hits_ids: Sequence[Any],
    order: Sequence[int],
    scores: Sequence[float],
    model: Sequence[float],
    per_query: Sequence[Sequence[float]] = (),
    fused: Sequence[float] | None = None,
) -> list[RankedHit]:
    """The reranked window after cuts: id, the score the client saw (``_score``), model score,
    new rank, original rank, the fused score that ordered it (when fusion is not ``replace``),
    and with variants the model's score against the original query and each variant."""
    return [
        RankedHit(
            scores[i],
            r,
            i + 1,
            hits_ids[i],
            model[i],
            fused[i] if fused is not None else None,
            [q[i] for q in per_query] if len(per_query) > 1 else None,
        )
        for r, i in enumerate(order, 1)
    ]


def planned(event: SearchEvent, route_name: str, plan: SearchPlan, route: RouteConfig) -> None:
    """What was asked: the route, the query, its language and variants, the page, the window."""
    event.route, event.query, event.window, event.model = route_name, plan.query, route.window, route.model
    event.language = plan.language
    event.page = page(plan.from_, plan.size)
    if plan.rewrite is not None:
        event.variants = [VariantRecord(text=v.text, rules=list(v.rules)) for v in plan.rewrite.variants]
        event.rules = list(plan.rewrite.rules)
        event.retrieval = plan.retrieval
        event.timings.rewrite_ms = round(plan.rewrite.took_ms, 3)


def searched(
    event: SearchEvent,
    route_name: str,
    plan: SearchPlan,
    route: RouteConfig,
    window: Window,
    scoring: Scoring,
    decision: Decision | None,
    ubi: Ubi | None,
    served: Served | None,
) -> None:
    """The event of a search the core served, from its stages' results: the plan, the cluster's
    window, the model's scores and the decision (the whole window's scores, cut hits too: what a
    threshold preview needs to decide as the sidecar did), the UBI ids, the experiment's arm."""
    planned(event, route_name, plan, route)
    event.model, event.language = scoring.route.model, scoring.language
    event.baseline = window.baseline  # read before the page rewrote the hits' _score
    event.timings.rerank_ms = scoring.outcome.took_ms
    scores = scoring.scores
    if scores is not None and decision is not None and scoring.per_query is not None:
        event.timings.queue_ms, event.timings.model_ms = scoring.queue_ms, scoring.model_ms
        for i in window.missing:
            event.baseline[i].no_text = True
        event.cut, event.flags = decision.cut, list(decision.flags)
        fused = None if scoring.route.fusion == "replace" else decision.final
        event.final = final(window.ids, decision.order, decision.shown, scores, scoring.per_query, fused)
        for row, value in zip(event.baseline, scores, strict=True):
            row.model_score = value
    if ubi is not None:
        event.query_id, event.client_id, event.served = ubi.query_id, ubi.client_id, ubi.served
    if served is not None and ubi is not None:
        event.experiment = served.record
        event.experiment.credit = page_credit(served.credit, plan.from_, plan.size, len(ubi.served))
