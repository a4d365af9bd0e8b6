"""What thresholds would do to recorded searches: the policy's own code over the events' scores."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from sidecar.config import ConfigError, RouteConfig, format_validation_error
from sidecar.events.event import SearchEvent
from sidecar.search.policy import decide

# the route keys a preview may change
TUNABLE = frozenset(
    {"min_score", "relative_to_top", "max_drop", "max_hits", "fusion", "fusion_alpha", "rrf_k"}
)


def proposed_route(route: RouteConfig, changes: Mapping[str, Any], where: str) -> RouteConfig:
    """The route with ``changes`` applied and validated; ConfigError naming the key otherwise."""
    unknown = sorted(set(changes) - TUNABLE)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: not a threshold (tunable: {', '.join(sorted(TUNABLE))})")
    try:
        return RouteConfig.model_validate({**route.model_dump(), **changes})
    except ValidationError as e:
        raise ConfigError(f"{where}.{format_validation_error(e)}") from None


def figures(route: RouteConfig, events: Iterable[SearchEvent]) -> dict[str, Any]:
    """Over applied searches with recorded window scores: the share of window hits cut, of
    searches left with an empty page, and of searches whose top hit is not the cluster's."""
    searches = hits = cut = empty = changed = 0
    for e in events:
        if not e.scored:
            continue
        scores = [float(b.model_score or 0.0) for b in e.baseline]
        missing = [i for i, b in enumerate(e.baseline) if b.no_text]
        decision = decide(route, scores, [b.score for b in e.baseline], missing)
        start = e.page.from_ if e.page is not None else 0
        searches += 1
        hits += len(scores)
        cut += decision.cut
        empty += len(decision.order) <= start
        changed += bool(decision.order) and decision.order[0] != 0
    share = (lambda n: round(n / searches, 4)) if searches else (lambda n: None)
    return {
        "searches": searches,
        "hits_cut": round(cut / hits, 4) if hits else None,
        "empty_results": share(empty),
        "top1_changed": share(changed),
    }
