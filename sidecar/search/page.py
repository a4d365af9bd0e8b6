"""Cut the client's page out of the reranked (or baseline) window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Explainer:
    """How a reranked hit's ``_score`` was made, for the ``_explanation`` of a search sent with
    ``explain: true`` (as OpenSearch's rescore explains its own): the shown score, the model's
    score and the fusion, with the cluster's explanation nested. ``hidden``: under an
    experiment, which arm ordered the hit is not told."""

    model: str
    fusion: str
    alpha: float
    rrf_k: int
    fused: Sequence[float] | None = None
    hidden: bool = False

    def of(self, shown: float, score: float, given: Any, original: Any, rank: int) -> dict[str, Any]:
        cluster = _cluster_node(given, original, f"rank {rank} of the window it returned")
        if self.hidden:
            return {
                "value": shown,
                "description": "rerank-sidecar: reranked under an experiment",
                "details": [cluster],
            }
        a, b, k = round(self.alpha, 4), round(1 - self.alpha, 4), self.rrf_k
        fused = None if self.fused is None else round(self.fused[rank - 1], 6)
        laid = "the model's scores laid along the order of"
        how = {
            "replace": "the model's score (fusion replace)",
            "linear": f"{a} x the model's score + {b} x the cluster's min-max normalized score"
            " (fusion linear)",
            "auto": f"{laid} {a} x the model's score + {b} x the cluster's rank as {k}/({k} + rank)"
            f" (fusion auto; this hit fused {fused})",
            "rrf": f"{laid} 1/({k} + model rank) + 1/({k} + cluster rank)"
            f" (fusion rrf; this hit fused {fused})",
        }[self.fusion]
        model = {
            "value": score,
            "description": f"model {self.model}: the calibrated score of the hit's text against the query",
            "details": [],
        }
        return {"value": shown, "description": f"rerank-sidecar: {how}", "details": [model, cluster]}

    @staticmethod
    def past_window(given: Any, original: Any, rank: int) -> dict[str, Any]:
        """A hit after the reranked window: 0, below every reranked hit, in the cluster's order."""
        cluster = _cluster_node(given, original, f"rank {rank}")
        return {
            "value": 0.0,
            "description": "rerank-sidecar: past the reranked window, below every reranked hit",
            "details": [cluster],
        }


def _cluster_node(given: Any, original: Any, where: str) -> dict[str, Any]:
    """The cluster's score of a hit, with its own explanation nested (``where``: its rank)."""
    return {
        "value": original if isinstance(original, (int, float)) else 0.0,
        "description": f"the cluster's score ({where})",
        "details": [given] if isinstance(given, dict) else [],
    }


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
    explainer: Explainer | None = None,
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
            if explainer is not None and "_explanation" in hit:
                hit["_explanation"] = explainer.of(final[i], scores[i], hit["_explanation"], original, i + 1)
        _restore_source(hit, plan)
        page.append(hit)
    first = len(hits) + max(0, plan.from_ - len(order))  # the tail's first hit, as the cluster ranks it
    for j, hit in enumerate(tail[: plan.size - len(page)]):
        if final is not None:
            original = hit.get("_score")
            hit["_score"] = 0.0
            if annotate:
                hit["_rerank"] = {"score": None, "original_score": original, "original_rank": first + j + 1}
            if explainer is not None and "_explanation" in hit:
                hit["_explanation"] = Explainer.past_window(hit["_explanation"], original, first + j + 1)
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
