"""``eval --tune``: a search over a route's settings on judged queries, cross-validated.

Each retrieval setting is collected once (``collect``: the cluster's window and the model's
scores per query); every other setting (fusion, alpha, rrf_k, window, min_score, aggregation)
is replayed offline through the sidecar's own policy. K-fold cross-validation over queries:
the setting chosen on the other folds is scored on each held-out fold, so the held-out figure
is what tuning would really buy. Folds and ties are fixed, so every run with the same inputs
gives the same answer.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import RouteConfig
from sidecar.engine.calibration import Calibration, fit
from sidecar.eval.collect import Window, replay
from sidecar.eval.metrics import evaluate

FUSIONS: tuple[dict[str, Any], ...] = (
    {"fusion": "auto"},
    *({"fusion": "auto", "fusion_alpha": a} for a in (0.4, 0.5, 0.7, 0.8)),
    {"fusion": "replace"},
    *({"fusion": "rrf", "rrf_k": k} for k in (20, 60, 100)),
    *({"fusion": "linear", "fusion_alpha": a} for a in (0.3, 0.5, 0.7, 0.9)),
)
WINDOWS = (20, 50, 100)
MIN_SCORES = (None, 0.05, 0.1, 0.2)
AGGREGATES: tuple[dict[str, Any], ...] = (
    {"aggregate": "max"},
    {"aggregate": "mean"},
    *({"aggregate": "weighted", "original_weight": w} for w in (0.0, 0.25, 0.5)),
)


@dataclass(frozen=True)
class Setting:
    """One point of the search: route keys, rewrite keys, and which collection it reads."""

    route: tuple[tuple[str, Any], ...]
    rewrite: tuple[tuple[str, Any], ...] = ()

    @property
    def retrieval(self) -> str | None:
        return dict(self.rewrite).get("retrieval")

    def apply(self, route: RouteConfig) -> RouteConfig:
        """The route with this setting's keys."""
        update: dict[str, Any] = dict(self.route)
        if self.rewrite and route.rewrite is not None:
            update["rewrite"] = route.rewrite.model_copy(update=dict(self.rewrite))
        return route.model_copy(update=update)

    def describe(self, base: RouteConfig) -> str:
        """The keys that differ from ``base``, as ``key value`` pairs."""
        mine = self.apply(base)
        parts = [f"{k} {v}" for k, v in self.route if getattr(base, k) != v and _matters(mine, k)]
        if base.rewrite is not None and mine.rewrite is not None:
            parts += [
                f"rewrite.{k} {v}"
                for k, v in self.rewrite
                if getattr(base.rewrite, k) != v
                and (k != "original_weight" or mine.rewrite.aggregate == "weighted")
            ]
        return ", ".join(parts) or "as configured"

    def changes(self, base: RouteConfig) -> dict[str, Any]:
        """What to write into the route's YAML: its keys that differ from ``base``."""
        mine = self.apply(base)
        out: dict[str, Any] = {k: v for k, v in self.route if getattr(base, k) != v and _matters(mine, k)}
        if base.rewrite is not None and mine.rewrite is not None:
            rw = {k: v for k, v in self.rewrite if getattr(base.rewrite, k) != v}
            if rw:
                out["rewrite"] = rw
        return out


def _matters(route: RouteConfig, key: str) -> bool:
    """Whether a key changes anything under the route's fusion (rrf_k means nothing to replace)."""
    if key == "rrf_k":
        return route.fusion in ("rrf", "auto")
    if key == "fusion_alpha":
        return route.fusion in ("linear", "auto")
    return True


def _distance(changes: Mapping[str, Any]) -> int:
    return len(changes) + len(changes.get("rewrite", {}))


def grid(route: RouteConfig, retrievals: Sequence[str], collected_window: int) -> list[Setting]:
    """Every setting to try for ``route``: the route as configured first."""
    windows = sorted({w for w in (*WINDOWS, route.window) if w <= collected_window})
    aggregates: Iterable[dict[str, Any]] = AGGREGATES if route.rewrite is not None else ({},)
    out = [current(route, retrievals)]
    for fusion, window, min_score, agg, retrieval in itertools.product(
        FUSIONS, windows, MIN_SCORES, aggregates, retrievals
    ):
        keys = {**fusion, "window": window, "min_score": min_score}
        rewrite = {**agg, "retrieval": retrieval} if route.rewrite is not None else {}
        setting = Setting(tuple(sorted(keys.items())), tuple(sorted(rewrite.items())))
        if setting not in out:
            out.append(setting)
    return out


def current(route: RouteConfig, retrievals: Sequence[str]) -> Setting:
    """The route as configured, as a Setting."""
    keys = ("fusion", "fusion_alpha", "rrf_k", "window", "min_score")
    rewrite: tuple[tuple[str, Any], ...] = ()
    if route.rewrite is not None:
        rw = route.rewrite
        retrieval = rw.retrieval if rw.retrieval in retrievals else retrievals[0]
        rewrite = tuple(
            sorted(
                {
                    "aggregate": rw.aggregate,
                    "original_weight": rw.original_weight,
                    "retrieval": retrieval,
                }.items()
            )
        )
    return Setting(tuple(sorted((k, getattr(route, k)) for k in keys)), rewrite)


def folds(queries: Sequence[str], k: int) -> list[list[str]]:
    """``k`` folds of the queries: sorted, shuffled with a fixed seed, dealt round-robin."""
    order = sorted(queries)
    random.Random(0).shuffle(order)
    return [order[i::k] for i in range(k)]


@dataclass(frozen=True)
class FoldResult:
    """One fold: the setting chosen on the others, and both settings' figures on this one."""

    queries: int
    chosen: Setting
    tuned: float
    configured: float


@dataclass(frozen=True)
class TuneResult:
    """The cross-validated figures and the setting chosen on every query."""

    settings: int
    folds: list[FoldResult]
    held_out: dict[str, float]  # NDCG@10 and Hit@1 over every query, each held out once
    configured: dict[str, float]
    best: Setting  # the configured route unless tuning gained on held-out queries
    best_in_sample: float
    calibration: Calibration | None
    improves: bool  # the held-out figure beats the configured route's


def tune(
    route: RouteConfig,
    collections: Mapping[str, Mapping[str, Window]],
    qrels: Mapping[str, Mapping[str, int]],
    k: int = 5,
    advance: Callable[[int], None] = lambda n: None,
    calibration: Calibration | None = None,
) -> TuneResult:
    """Search the grid: ``collections`` maps a retrieval setting to its windows."""
    retrievals = list(collections)
    windows = next(iter(collections.values()))
    queries = sorted(windows)
    collected = max((len(w.ids) for w in windows.values()), default=route.window)
    settings = grid(route, retrievals, max(collected, route.window))
    ndcg: list[dict[str, float]] = []
    hit: list[dict[str, float]] = []
    for s in settings:
        r = s.apply(route)
        source = collections[s.retrieval or retrievals[0]]
        per_query = evaluate(qrels, {q: replay(source[q], r) for q in queries})
        ndcg.append({q: m["ndcg@10"] for q, m in per_query.items()})
        hit.append({q: m["hit@1"] for q, m in per_query.items()})
        advance(1)

    # how far a setting is from the configured route: the keys it changes
    distance = [_distance(s.changes(route)) for s in settings]

    def best_on(qs: Sequence[str]) -> int:
        """The best mean NDCG@10 on ``qs``; of equals, the one closest to the configured route."""
        means = [statistics.fmean(n[q] for q in qs) for n in ndcg]
        top = max(means)
        return min((i for i, m in enumerate(means) if m >= top - 1e-12), key=lambda i: (distance[i], i))

    results = []
    chosen_per_query: dict[str, int] = {}
    for held in folds(queries, k):
        train = [q for q in queries if q not in set(held)]
        i = best_on(train)
        for q in held:
            chosen_per_query[q] = i
        results.append(
            FoldResult(
                len(held),
                settings[i],
                statistics.fmean(ndcg[i][q] for q in held),
                statistics.fmean(ndcg[0][q] for q in held),
            )
        )
    held_out = {
        "ndcg@10": statistics.fmean(ndcg[chosen_per_query[q]][q] for q in queries),
        "hit@1": sum(hit[chosen_per_query[q]][q] for q in queries),
    }
    configured = {"ndcg@10": statistics.fmean(ndcg[0].values()), "hit@1": sum(hit[0].values())}
    # a setting that won in-sample but not on held-out queries is noise: keep the configuration
    improves = held_out["ndcg@10"] > configured["ndcg@10"] + 1e-9
    best = best_on(queries) if improves else 0
    return TuneResult(
        settings=len(settings),
        folds=results,
        held_out=held_out,
        configured=configured,
        best=settings[best],
        best_in_sample=statistics.fmean(ndcg[best].values()),
        calibration=fit_calibration(windows, qrels, calibration) if calibration is not None else None,
        improves=improves,
    )


def fit_calibration(
    windows: Mapping[str, Window], qrels: Mapping[str, Mapping[str, int]], current: Calibration
) -> Calibration | None:
    """A calibration of the model's raw scores fitted on the judged windows (the recorded
    scores are calibrated ones: ``current`` turns them back into raw scores); None when the
    windows hold no relevant or no other candidate."""
    raw: list[float] = []
    relevant: list[bool] = []
    for q, w in windows.items():
        if w.scores is None:
            continue
        for doc, s in zip(w.ids, w.scores[0], strict=True):
            raw.append(current.raw(s))
            relevant.append(qrels.get(q, {}).get(doc, 0) > 0)
    try:
        return fit(raw, relevant)
    except ValueError:
        return None
