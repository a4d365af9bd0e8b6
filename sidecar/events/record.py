"""One search's event record: what came in, what the cluster gave, what the model made of it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sidecar.config import RouteConfig
from sidecar.search.documents import field_value


def new_event(index: str | None, headers: Mapping[str, str]) -> dict[str, Any]:
    """The start of a record; only ``X-Rerank*`` request headers are kept, never credentials."""
    now = time.time()
    return {
        "id": uuid.uuid4().hex,
        "time": now,
        "index": index or "_all",
        "route": None,
        "query": None,
        "variants": [],
        "rules": [],
        "retrieval": "original",
        "window": None,
        "page": None,
        "baseline": [],
        "final": [],
        "cut": 0,
        "timings": {},
        "model": None,
        "status": "bypass",
        "reason": "",
        "flags": [],
        "headers": {k: v for k, v in headers.items() if k.startswith("x-rerank")},
    }


def baseline(hits: Sequence[Mapping[str, Any]], route: RouteConfig) -> list[dict[str, Any]]:
    """The window in the cluster's order: id, original score, rank, a short title."""
    out = []
    for rank, h in enumerate(hits, 1):
        title = field_value(h.get("_source"), route.fields[0]) if isinstance(h.get("_source"), dict) else ""
        out.append({"id": h.get("_id"), "score": h.get("_score"), "rank": rank, "title": title[:120]})
    return out


def final(
    hits_ids: Sequence[Any],
    order: Sequence[int],
    scores: Sequence[float],
    model: Sequence[float],
    per_query: Sequence[Sequence[float]] = (),
    fused: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """The reranked window after cuts: id, the score the client saw (``_score``), model score,
    new rank, original rank, the fused score that ordered it (when fusion is not ``replace``),
    and with variants the model's score against the original query and each variant."""
    out = []
    for r, i in enumerate(order, 1):
        row: dict[str, Any] = {"id": hits_ids[i], "score": scores[i], "model_score": model[i]}
        if fused is not None:
            row["fused"] = fused[i]
        row.update(rank=r, original_rank=i + 1)
        if len(per_query) > 1:
            row["query_scores"] = [q[i] for q in per_query]
        out.append(row)
    return out
