"""Build one search's event record: what came in, what the cluster gave, what the model made of it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sidecar.config import RouteConfig
from sidecar.documents import field_value
from sidecar.events.event import BaselineHit, Page, RankedHit, SearchEvent


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


def baseline(hits: Sequence[Mapping[str, Any]], route: RouteConfig) -> list[BaselineHit]:
    """The window in the cluster's order: id, original score, rank, a short title."""
    out = []
    for rank, h in enumerate(hits, 1):
        title = field_value(h.get("_source"), route.fields[0]) if isinstance(h.get("_source"), dict) else ""
        score = h.get("_score")
        cluster = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
        out.append(BaselineHit(id=h.get("_id"), score=cluster, rank=rank, title=title[:120]))
    return out


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
            id=hits_ids[i],
            score=scores[i],
            model_score=model[i],
            rank=r,
            original_rank=i + 1,
            fused=fused[i] if fused is not None else None,
            query_scores=[q[i] for q in per_query] if len(per_query) > 1 else None,
        )
        for r, i in enumerate(order, 1)
    ]
