"""After the model: fusion with the cluster's order, thresholds that cut, diagnostic flags."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.config import RouteConfig


@dataclass(frozen=True)
class Decision:
    """The window's final order (indices into it, cut hits left out) and final scores."""

    order: list[int]
    final: list[float]
    cut: int
    flags: tuple[str, ...]


def aggregate(per_query: Sequence[Sequence[float]], mode: str, original_weight: float) -> list[float]:
    """One model score per candidate from its scores against the original query (first) and
    each variant: the best, the mean, or the original weighted against the variants' mean."""
    if len(per_query) == 1:
        return list(per_query[0])
    columns = list(zip(*per_query, strict=True))
    if mode == "max":
        return [max(c) for c in columns]
    if mode == "mean":
        return [statistics.fmean(c) for c in columns]
    w = original_weight
    return [w * c[0] + (1 - w) * statistics.fmean(c[1:]) for c in columns]


def fuse(route: RouteConfig, scores: Sequence[float], original: Sequence[float | None]) -> list[float]:
    """Final scores: the model's (replace), a linear blend, or reciprocal rank fusion."""
    if route.fusion in (None, "replace"):
        return list(scores)
    if route.fusion == "linear":
        known = [o for o in original if o is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 0.0)
        span = hi - lo
        norm = [((o - lo) / span if span else 1.0) if o is not None else 0.0 for o in original]
        a = route.fusion_alpha
        return [a * s + (1 - a) * n for s, n in zip(scores, norm, strict=True)]
    by_model = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    model_rank = {i: r + 1 for r, i in enumerate(by_model)}
    k = route.rrf_k
    return [1 / (k + model_rank[i]) + 1 / (k + i + 1) for i in range(len(scores))]


def _cut(route: RouteConfig, order: list[int], scores: Sequence[float]) -> list[int]:
    kept = order
    if route.min_score is not None:
        kept = [i for i in kept if scores[i] >= route.min_score]
    if route.relative_to_top is not None and kept:
        top = max(scores[i] for i in kept)
        kept = [i for i in kept if scores[i] >= top * route.relative_to_top]
    if route.max_drop is not None:
        for pos in range(1, len(kept)):
            if scores[kept[pos - 1]] - scores[kept[pos]] > route.max_drop:
                kept = kept[:pos]
                break
    if route.max_hits is not None:
        kept = kept[: route.max_hits]
    return kept


def flags(route: RouteConfig, scores: Sequence[float]) -> tuple[str, ...]:
    """``flat`` when the top scores hardly differ, ``low`` when they are all weak."""
    top = sorted(scores, reverse=True)[: route.diagnostic_top]
    if not top:
        return ()
    out = []
    if len(top) > 1 and statistics.pstdev(top) < route.flat_std:
        out.append("flat")
    if statistics.fmean(top) < route.low_mean:
        out.append("low")
    return tuple(out)


def decide(route: RouteConfig, scores: Sequence[float], original: Sequence[float | None]) -> Decision:
    """Order by the fused score, then cut by the thresholds (on the model's score)."""
    final = fuse(route, scores, original)
    order = sorted(range(len(scores)), key=lambda i: (-final[i], i))
    kept = _cut(route, order, scores)
    return Decision(kept, final, len(order) - len(kept), flags(route, scores))
