"""One pass of a dataset through a sidecar that records, per query, the cluster's window and the
model's scores; every other setting of fusion, window, thresholds and aggregation is then
replayed offline through the sidecar's own policy code, with no model call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sidecar.config import Config, RouteConfig, parse_config
from sidecar.engine.protocol import Backend
from sidecar.eval.dataset import Dataset
from sidecar.eval.runner import EvalError, run_queries, running_sidecar
from sidecar.events.event import SearchEvent
from sidecar.search.languages import reranker
from sidecar.search.policy import aggregate, decide
from sidecar.search.routes import match_route
from sidecar.vocab import Status


@dataclass(frozen=True)
class Window:
    """One query's candidates in the cluster's order, their cluster scores, and the model's
    scores against the original query (first row) and each variant; None when not reranked."""

    ids: tuple[str, ...]
    cluster: tuple[float | None, ...]
    scores: tuple[tuple[float, ...], ...] | None
    # the route answers this query in the cluster's order: its model does not read the query's
    # language (the scores were collected all the same, with the model reading every language)
    unread: bool = False


def collecting_config(config: Config, route_index: int, window: int, n_queries: int) -> Config:
    """The config as the collection runs it: the route at ``window`` candidates, ordered by
    the model alone and cut by nothing (replay applies those), every event kept in memory."""
    data = config.model_dump(mode="json")
    route = data["routes"][route_index]
    route.update(window=window, fusion="replace", min_score=None, relative_to_top=None, max_drop=None)
    route["max_hits"] = None
    data["models"][route["model"]]["languages"] = ["any"]  # scores for every query; replay guards
    # every event kept until it is read: a window of 100 scored hits takes tens of kilobytes
    data["events"] = {
        "buffer": max(data["events"]["buffer"], n_queries + 100),
        "buffer_bytes": max(data["events"]["buffer_bytes"], (n_queries + 100) * 256 * 1024),
    }
    return parse_config(data)


def window_of(event: SearchEvent, unread: bool = False) -> Window:
    """A recorded search event as a Window (``unread``: see Window)."""
    ids = tuple(str(b.id) for b in event.baseline)
    cluster = tuple(b.score for b in event.baseline)
    if event.status is not Status.APPLIED:
        return Window(ids, cluster, None, unread)
    rows = {f.original_rank - 1: f for f in event.final}
    if len(rows) != len(ids):
        raise EvalError(f"event {event.id}: {len(rows)} scored hits for a window of {len(ids)}")
    per_hit = [rows[i].query_scores or [rows[i].model_score or 0.0] for i in range(len(ids))]
    scores = tuple(tuple(float(x) for x in col) for col in zip(*per_hit, strict=True)) if per_hit else ()
    return Window(ids, cluster, scores, unread)


async def collect(
    config: Config,
    index: str,
    dataset: Dataset,
    template: Mapping[str, Any],
    window: int,
    concurrency: int,
    advance: Callable[[int], None] = lambda n: None,
    backends: Mapping[str, Backend] | None = None,
    config_path: Path | None = None,
) -> dict[str, Window]:
    """Each judged query through a sidecar collecting at ``window`` candidates; its Window."""
    route_index = match_route(config.routes, [index])
    if route_index is None:
        raise EvalError(f"no route covers index {index!r}")
    collecting = collecting_config(config, route_index, window, len(dataset.queries))
    route, reads = config.routes[route_index], config.models[config.routes[route_index].model].reads
    async with running_sidecar(collecting, backends, config_path) as server:
        result = await run_queries(server.proxy_url, index, dataset, template, 10, concurrency, advance)
        out: dict[str, Window] = {}
        async with httpx.AsyncClient(base_url=server.admin_url, timeout=60) as admin:
            for qid in dataset.queries:
                event_id = result.events.get(qid)
                if event_id is None:
                    raise EvalError(f"query {qid}: the sidecar did not intercept the search")
                r = await admin.get(f"/_sidecar/events/{event_id}")
                r.raise_for_status()
                event = SearchEvent.model_validate(r.json())
                variants = [v.text for v in event.variants]
                unread = reranker(route, reads, event.query or "", variants) is None
                out[qid] = window_of(event, unread)
    return out


def replay(w: Window, route: RouteConfig) -> list[str]:
    """The ids in the order the sidecar gives them with ``route``'s settings (window, fusion,
    thresholds, aggregation, variants), from the recorded scores."""
    n = min(route.window, len(w.ids))
    if w.scores is None or w.unread:
        return list(w.ids[:n])
    per_query = [row[:n] for row in w.scores]
    if route.rewrite is not None:
        kept = per_query[: 1 + route.rewrite.max_variants]
        scores = aggregate(kept, route.rewrite.aggregate, route.rewrite.original_weight)
    else:
        scores = list(per_query[0])
    decision = decide(route, scores, list(w.cluster[:n]))
    return [w.ids[i] for i in decision.order]
