"""Cut the client's page out of the reranked (or baseline) window."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.search.plan import SearchPlan
from sidecar.search.policy import Decision
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
    decision: Decision | None = None,
    tail: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Reorder the window by the decision (or keep the cluster's order when ``scores`` is None)
    and slice the client's page out of it followed by ``tail``: the cluster's hits after the
    window, for a page that reaches past the reranked hits. ``_score`` becomes the final score;
    a hit from the tail shows 0 under reranking (below every reranked hit), its cluster score
    under the cluster's order.

    ``hits.total``, aggregations, ``took`` and the rest stay as the cluster sent them.
    """
    hits = response["hits"]["hits"]
    if scores is None:
        order, final = list(range(len(hits))), None
    elif decision is None:
        order, final = sorted(range(len(hits)), key=lambda i: (-scores[i], i)), list(scores)
    else:
        order, final = decision.order, decision.shown
    page = []
    for i in order[plan.from_ : plan.from_ + plan.size]:
        hit = hits[i]
        if scores is not None and final is not None:
            original = hit.get("_score")
            hit["_score"] = final[i]
            if annotate:
                hit["_rerank"] = {"score": scores[i], "original_score": original, "original_rank": i + 1}
        _restore_source(hit, plan)
        page.append(hit)
    first = len(hits) + max(0, plan.from_ - len(order))  # the tail's first hit, as the cluster ranks it
    for j, hit in enumerate(tail[: plan.size - len(page)]):
        if final is not None:
            original = hit.get("_score")
            hit["_score"] = 0.0
            if annotate:
                hit["_rerank"] = {"score": None, "original_score": original, "original_rank": first + j + 1}
        _restore_source(hit, plan)
        page.append(hit)
    response["hits"]["hits"] = page
    if final is not None:
        response["hits"]["max_score"] = max((final[i] for i in order), default=None)
    return response


def tail_range(plan: SearchPlan, found: int, kept: int, window: int) -> tuple[int, int] | None:
    """The cluster's hits a page needs after the window, as (from, size): the client's page
    runs past the ``kept`` reranked hits, and the cluster ``found`` a full window (a window of
    fewer hits than it asked for holds every hit there is). None when the page ends within it."""
    need = plan.from_ + plan.size - kept
    if need <= 0 or found < window:
        return None
    return window + max(0, plan.from_ - kept), min(need, plan.size)
