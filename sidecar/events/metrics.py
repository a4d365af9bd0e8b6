"""Prometheus metrics and the live stats summary, both fed by search events."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sidecar.events.event import SearchEvent
from sidecar.percentile import percentile
from sidecar.vocab import Status, reason_text

STAGES = ("rewrite_ms", "upstream_ms", "queue_ms", "model_ms", "rerank_ms", "total_ms")
_SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ModelCollector(Collector):
    """Per-model figures read at scrape time from the models (local batchers or remote clients)."""

    def __init__(self, models: Callable[[], Mapping[str, Any]]) -> None:
        self.models = models

    def collect(self) -> Iterable[Any]:
        depth = GaugeMetricFamily(
            "rerank_sidecar_queue_depth", "Requests waiting for the model", labels=["model"]
        )
        batches = CounterMetricFamily("rerank_sidecar_batches", "Forward passes run", labels=["model"])
        pairs = CounterMetricFamily("rerank_sidecar_pairs", "Pairs scored by the model", labels=["model"])
        hits = CounterMetricFamily(
            "rerank_sidecar_cache_hits", "Pairs served from the score cache", labels=["model"]
        )
        misses = CounterMetricFamily(
            "rerank_sidecar_cache_misses", "Pairs the cache did not hold", labels=["model"]
        )
        waste = GaugeMetricFamily(
            "rerank_sidecar_padding_waste_ratio",
            "Share of computed tokens that were padding",
            labels=["model"],
        )
        for name, b in self.models().items():
            depth.add_metric([name], b.queue_depth)
            batches.add_metric([name], b.stats.batches)
            pairs.add_metric([name], b.stats.pairs)
            hits.add_metric([name], b.stats.cache_hits)
            misses.add_metric([name], b.stats.cache_misses)
            waste.add_metric([name], b.stats.padding_waste)
        yield from (depth, batches, pairs, hits, misses, waste)


class _HealthCollector(Collector):
    """What the alerts watch, read at scrape time from the runtime (``health``: see
    ``Runtime.health_figures``): circuits, the event writer, the config store, routes' budgets."""

    def __init__(self, health: Callable[[], Mapping[str, Any]]) -> None:
        self.health = health

    def collect(self) -> Iterable[Any]:
        h = self.health()
        if not h:
            return
        circuit = GaugeMetricFamily(
            "rerank_sidecar_circuit_open",
            "1 while the model's circuit is open (its searches answered in the cluster's order)",
            labels=["model"],
        )
        for model, state in h["circuits"].items():
            circuit.add_metric([model], 0 if state == "closed" else 1)
        overloaded = CounterMetricFamily(
            "rerank_sidecar_overloaded", "Searches the model's queue refused (overloaded)", labels=["model"]
        )
        for model, n in h["overloaded"].items():
            overloaded.add_metric([model], n)
        ev = h["events"]
        queued = GaugeMetricFamily("rerank_sidecar_events_queued", "Events waiting for the writer")
        queued.add_metric([], ev["queued"])
        written = CounterMetricFamily("rerank_sidecar_events_written", "Events written to SQLite")
        written.add_metric([], ev["written"])
        dropped = CounterMetricFamily("rerank_sidecar_events_dropped", "Events no write could take")
        dropped.add_metric([], ev["dropped"])
        failing = GaugeMetricFamily(
            "rerank_sidecar_events_failing",
            "1 while the event writer or the events index sink fails (health says why)",
        )
        failing.add_metric([], 1 if ev["failing"] else 0)
        store = GaugeMetricFamily(
            "rerank_sidecar_config_store_degraded",
            "1 while the fleet's config store cannot be read or written (absent without a store)",
        )
        if h["config_store"] is not None:
            store.add_metric([], 1 if h["config_store"] else 0)
        timeout = GaugeMetricFamily(
            "rerank_sidecar_route_timeout_seconds", "The route's model budget (timeout_ms)", labels=["route"]
        )
        for route, seconds in h["timeouts"].items():
            timeout.add_metric([route], seconds)
        yield from (circuit, overloaded, queued, written, dropped, failing, store, timeout)


class _ExperimentCollector(Collector):
    """Each experiment's figures, read at scrape time from the tracker's summaries."""

    def __init__(self, experiments: Callable[[], list[dict[str, Any]]]) -> None:
        self.experiments = experiments

    def collect(self) -> Iterable[Any]:
        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"rerank_sidecar_experiment_{name}", doc, labels=["experiment", *extra])

        queries = gauge("queries", "Searches the experiment judged by (with an identity)")
        unidentified = gauge("unidentified", "Searches with no identity, served control")
        clicks = gauge("clicks", "Clicks counted")
        outcomes = gauge("outcomes", "Clicked searches won, lost or tied by treatment", ("outcome",))
        rate = gauge("win_rate", "Treatment's share of the decided searches (interleave, shadow)")
        ctr = gauge("ctr", "Searches with a click per search, per arm (ab)", ("arm",))
        p_value = gauge("p_value", "The test's p-value (sign test; two proportions for ab)")
        stopped = gauge("stopped", "1 when the guardrail stopped the experiment")
        for e in self.experiments():
            name = [e["name"]]
            queries.add_metric(name, e["queries"])
            unidentified.add_metric(name, e["unidentified"])
            clicks.add_metric(name, e["clicks"])
            stopped.add_metric(name, 1 if e["state"] == "stopped" else 0)
            if e["p_value"] is not None:
                p_value.add_metric(name, e["p_value"])
            if "arms" in e:
                for arm, figures in e["arms"].items():
                    if figures["ctr"] is not None:
                        ctr.add_metric([*name, arm], figures["ctr"])
            else:
                for outcome in ("wins", "losses", "ties"):
                    outcomes.add_metric([*name, outcome], e[outcome])
                if e["win_rate"] is not None:
                    rate.add_metric(name, e["win_rate"])
        yield from (queries, unidentified, clicks, outcomes, rate, ctr, p_value, stopped)


class Metrics:
    """Counters and histograms of searches by outcome and stage."""

    def __init__(
        self,
        models: Callable[[], Mapping[str, Any]],
        experiments: Callable[[], list[dict[str, Any]]] = list,
        health: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        self.registry = CollectorRegistry()
        self.searches = Counter(
            "rerank_sidecar_searches", "Intercepted searches", ["status", "reason"], registry=self.registry
        )
        self.latency = Histogram(
            "rerank_sidecar_stage_seconds",
            "Time per stage of a search",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.cut = Counter("rerank_sidecar_hits_cut", "Hits cut by thresholds", registry=self.registry)
        self.variants = Counter(
            "rerank_sidecar_rewrite_variants", "Query variants searched with", registry=self.registry
        )
        self.rules = Counter(
            "rerank_sidecar_rewrite_rules",
            "Rewrite rules fired, by kind (llm:timeout and llm:error: the LLM rewriter failed)",
            ["kind"],
            registry=self.registry,
        )
        self.route_latency = Histogram(
            "rerank_sidecar_search_seconds",
            "Whole time of a search the sidecar reranked or fell back on, by route",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.top_score = Histogram(
            "rerank_sidecar_top_score",
            "The model's score of the best hit of each reranked search, by route",
            ["route"],
            buckets=_SCORE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ModelCollector(models))
        self.registry.register(_HealthCollector(health))
        self.registry.register(_ExperimentCollector(experiments))

    def observe(self, event: SearchEvent) -> None:
        """Count one search and its stage timings."""
        self.searches.labels(event.status.value, reason_text(event.reason)).inc()
        for stage in STAGES:
            value = getattr(event.timings, stage)
            if value is not None:
                self.latency.labels(stage.removesuffix("_ms")).observe(value / 1000)
        if event.status is not Status.BYPASS and event.timings.total_ms is not None:
            route = str(event.route)
            self.route_latency.labels(route).observe(event.timings.total_ms / 1000)
            scored = [b.model_score for b in event.baseline if b.model_score is not None]
            if scored:
                self.top_score.labels(route).observe(max(scored))
        if event.cut:
            self.cut.inc(event.cut)
        if event.variants:
            self.variants.inc(len(event.variants))
        for rule in event.rules:
            self.rules.labels(rule if rule.startswith("llm:") else rule.partition(":")[0]).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    at = {f"p{p}": round(percentile(values, p), 2) for p in (50, 95, 99)}
    return at | {"mean": round(statistics.fmean(values), 2)}


def summarize(
    events: Iterable[SearchEvent], models: Mapping[str, Any], window_s: float = 60.0
) -> dict[str, Any]:
    """QPS, latency per stage, outcome rates, cache and queue figures over the recent events."""
    now = time.time()
    recent = [e for e in events if now - e.time <= window_s]
    n = len(recent)
    by_status = {s: sum(1 for e in recent if e.status is s) for s in Status}
    reranked = [e for e in recent if e.status is not Status.BYPASS]
    model_stats = {}
    for name, b in models.items():
        st = b.stats
        looked = st.cache_hits + st.cache_misses
        sizes = list(st.last_batch_sizes)
        model_stats[name] = {
            "queue_depth": b.queue_depth,
            "batches": st.batches,
            "mean_batch_size": round(statistics.fmean(sizes), 1) if sizes else None,
            "padding_waste": round(st.padding_waste, 4),
            "cache_hit_rate": round(st.cache_hits / looked, 4) if looked else None,
            "overloaded": st.overloaded,
        }
    out: dict[str, Any] = {
        "window_s": window_s,
        "searches": n,
        "qps": round(n / window_s, 2),
        "applied_rate": round(by_status[Status.APPLIED] / n, 4) if n else None,
        "fallback_rate": round(by_status[Status.FALLBACK] / n, 4) if n else None,
        "bypass_rate": round(by_status[Status.BYPASS] / n, 4) if n else None,
        "latency_ms": {s.removesuffix("_ms"): _percentiles(_stage(reranked, s)) for s in STAGES},
        "models": model_stats,
        "gpu_memory": _gpu_memory(),
    }
    return out


def _stage(events: Iterable[SearchEvent], stage: str) -> list[float]:
    return [v for e in events if (v := getattr(e.timings, stage)) is not None]


def _gpu_memory() -> dict[str, float] | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return {
        "allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 2),
        "used_gib": round((total - free) / 2**30, 2),
        "total_gib": round(total / 2**30, 2),
    }
