"""After the model: fusion with the cluster's order, thresholds that cut, diagnostic flags."""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sidecar.config import RouteConfig


@dataclass(frozen=True)
class Decision:
    """The window's final order (indices into it, cut hits left out), the fused scores that
    made it, the score each hit shows as ``_score`` (in [0, 1], never rising down the order),
    how many hits were cut, and the diagnostic flags."""

    order: list[int]
    final: list[float]
    cut: int
    flags: tuple[str, ...]
    shown: list[float]


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


def cluster_weight(route: RouteConfig, original: Sequence[float | None]) -> float:
    """How much the cluster's order counts. ``rrf``: fully. ``auto``: as far
    as its scores can tell: not at all when they are all equal (match_all, a filter-only or
    constant_score query: its ranks are only storage order); fully when it picked the window
    out of more hits than the window holds; and when the window holds every hit it found
    (n < window), n / rrf_k: a handful of candidates that it only sorted, not chose."""
    if route.fusion == "rrf":
        return 1.0
    known = [o for o in original if o is not None]
    if not known or max(known) == min(known):
        return 0.0
    n = len(original)
    return 1.0 if n >= route.window else min(1.0, n / route.rrf_k)


def fuse(route: RouteConfig, scores: Sequence[float], original: Sequence[float | None]) -> list[float]:
    """Final scores: the model's (replace); ``auto``: alpha x the model's calibrated score +
    (1 - alpha) x the cluster's rank as ``rrf_k / (rrf_k + rank)`` (1 for its first hit, 0.5
    at rank rrf_k), weighted by ``cluster_weight``; ``linear``: the same blend with the
    cluster's min-max normalized score; ``rrf``: reciprocal rank fusion."""
    if route.fusion == "replace":
        return list(scores)
    a = route.alpha
    if route.fusion == "linear":
        known = [o for o in original if o is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 0.0)
        span = hi - lo
        norm = [((o - lo) / span if span else 1.0) if o is not None else 0.0 for o in original]
        return [a * s + (1 - a) * n for s, n in zip(scores, norm, strict=True)]
    k, w = route.rrf_k, cluster_weight(route, original)
    if route.fusion == "auto":
        return [a * s + (1 - a) * w * k / (k + i) for i, s in enumerate(scores)]
    by_model = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    model_rank = {i: r + 1 for r, i in enumerate(by_model)}
    return [1 / (k + model_rank[i]) + w / (k + i + 1) for i in range(len(scores))]


def shown_scores(
    route: RouteConfig, scores: Sequence[float], final: Sequence[float], kept: list[int]
) -> list[float]:
    """The ``_score`` of each hit: the model's (calibrated) score under ``replace``, the blend
    (in [0, 1]) under ``linear``; under rank fusion, whose sums mean nothing to a client, the
    model's kept scores from the highest down, laid along the fused order: every ``_score`` is
    on the model's scale, falls down the page, and a ``_score`` threshold keeps as many hits
    as the same threshold on the model's score. Cut hits keep their model score."""
    if route.fusion == "replace":
        return list(scores)
    if route.fusion == "linear":
        return list(final)
    out = list(scores)
    for i, s in zip(kept, sorted((scores[i] for i in kept), reverse=True), strict=True):
        out[i] = s
    return out


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


def _pstdev(values: Sequence[float]) -> float:
    """The population standard deviation, in floats (statistics.pstdev works in exact fractions:
    a hundred times slower, for ten scores a search)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def flags(route: RouteConfig, scores: Sequence[float]) -> tuple[str, ...]:
    """``flat`` when the top scores hardly differ, ``low`` when even the best one is under
    ``low_score`` (or, when set, their mean is under ``low_mean``)."""
    top = sorted(scores, reverse=True)[: route.diagnostic_top]
    if not top:
        return ()
    out = []
    if len(top) > 1 and _pstdev(top) < route.flat_std:
        out.append("flat")
    if top[0] < route.low_score or (route.low_mean is not None and statistics.fmean(top) < route.low_mean):
        out.append("low")
    return tuple(out)


def decide(
    route: RouteConfig,
    scores: Sequence[float],
    original: Sequence[float | None],
    missing: Collection[int] = (),
) -> Decision:
    """Order by the fused score, then cut by the thresholds (on the model's score). Hits with
    no text in the route's fields (``missing``: the model had nothing to read) keep their
    cluster order after the scored ones, are never cut by a score threshold, show ``_score``
    0 and flag the search ``missing-text``."""
    if not missing:
        final = fuse(route, scores, original)
        order = sorted(range(len(scores)), key=final.__getitem__, reverse=True)  # stable: ties keep rank
        kept = _cut(route, order, scores)
        shown = shown_scores(route, scores, final, kept)
        cut_all = ("all-cut",) if order and not kept else ()  # the page is empty, hits.total is not
        return Decision(kept, final, len(order) - len(kept), (*cut_all, *flags(route, scores)), shown)
    read = [i for i in range(len(scores)) if i not in missing]
    inner = decide(
        route.model_copy(update={"max_hits": None}), [scores[i] for i in read], [original[i] for i in read]
    )
    final, shown = [0.0] * len(scores), [0.0] * len(scores)
    for j, i in enumerate(read):
        final[i], shown[i] = inner.final[j], inner.shown[j]
    kept = [read[j] for j in inner.order] + sorted(missing)
    if route.max_hits is not None:
        kept = kept[: route.max_hits]
    return Decision(kept, final, len(scores) - len(kept), (*inner.flags, "missing-text"), shown)
