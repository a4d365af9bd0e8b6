"""Cut the client's page out of the reranked (or baseline) window."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.search.plan import SearchPlan
from sidecar.search.source_filter import apply_filter


def window_hits(response: Any) -> list[dict[str, Any]] | None:
    """The hits of a search response, or None when it is not a search response."""
    if not isinstance(response, dict):
        return None
    hits = response.get("hits")
    if not isinstance(hits, dict) or not isinstance(hits.get("hits"), list):
        return None
    items = hits["hits"]
    return items if all(isinstance(h, dict) for h in items) else None


def _restore_source(hit: dict[str, Any], plan: SearchPlan) -> None:
    if plan.source.is_identity or "_source" not in hit:
        return
    if not plan.source.enabled:
        del hit["_source"]
    elif isinstance(hit["_source"], dict):
        hit["_source"] = apply_filter(hit["_source"], plan.source)


def build_page(
    response: dict[str, Any],
    plan: SearchPlan,
    scores: Sequence[float] | None,
    annotate: bool,
) -> dict[str, Any]:
    """Reorder the window by ``scores`` (or keep the cluster's order when None) and slice the page.

    ``hits.total``, aggregations, ``took`` and the rest stay as the cluster sent them.
    """
    hits = response["hits"]["hits"]
    if scores is None:
        order = list(range(len(hits)))
    else:
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    page = []
    for i in order[plan.from_ : plan.from_ + plan.size]:
        hit = hits[i]
        if scores is not None:
            original = hit.get("_score")
            hit["_score"] = scores[i]
            if annotate:
                hit["_rerank"] = {"score": scores[i], "original_score": original, "original_rank": i + 1}
        _restore_source(hit, plan)
        page.append(hit)
    response["hits"]["hits"] = page
    if scores is not None:
        response["hits"]["max_score"] = max(scores) if scores else None
    return response
