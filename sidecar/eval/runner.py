"""Run a dataset's queries against the cluster (baseline) and through a sidecar per config."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from sidecar.config import Config, parse_config
from sidecar.engine.protocol import Backend
from sidecar.eval.dataset import Dataset
from sidecar.eval.index import fill
from sidecar.eval.metrics import evaluate, mean
from sidecar.percentile import percentile
from sidecar.search.routes import match_route

if TYPE_CHECKING:
    from sidecar.server import SidecarServer

# Offline, quality is measured: a route's budget is raised so that a slow CPU does not turn
# reranking into fallbacks (latency is reported on its own).
EVAL_TIMEOUT_MS = 600_000


class EvalError(ValueError):
    """An evaluation that cannot run as asked: what is wrong, in one line."""


@dataclass
class Result:
    """One setting's ranked lists, latencies, outcomes and metrics."""

    runs: dict[str, list[str]] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    events: dict[str, str] = field(default_factory=dict)  # query id -> the sidecar's event id
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)

    def score(self, qrels: Mapping[str, Mapping[str, int]]) -> None:
        """Compute the metrics of the runs."""
        self.per_query = evaluate(qrels, self.runs)

    def summary(self, baseline: Result | None = None) -> dict[str, Any]:
        """Mean metrics, latency percentiles, outcomes, and the comparison with the baseline."""
        lat = sorted(self.ms.values())
        out: dict[str, Any] = dict(mean(self.per_query))
        out["p50_ms"] = round(statistics.median(lat), 1) if lat else None
        out["p95_ms"] = round(percentile(lat, 95), 1) if lat else None
        out["outcomes"] = dict(sorted(self.outcomes.items()))
        if baseline is not None:
            diffs = [self.per_query[q]["ndcg@10"] - baseline.per_query[q]["ndcg@10"] for q in self.per_query]
            n = len(diffs) or 1
            out["improved"] = round(sum(d > 1e-9 for d in diffs) / n, 4)
            out["hurt"] = round(sum(d < -1e-9 for d in diffs) / n, 4)
            out["unchanged"] = round(sum(abs(d) <= 1e-9 for d in diffs) / n, 4)
        return out


async def run_queries(
    url: str,
    index: str,
    dataset: Dataset,
    template: Mapping[str, Any],
    size: int,
    concurrency: int,
    advance: Callable[[int], None] = lambda n: None,
) -> Result:
    """Every judged query as a search of ``size`` hits, ``concurrency`` at a time, in query order."""
    result = Result()
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=EVAL_TIMEOUT_MS / 1000, limits=limits) as client:

        async def one(qid: str, text: str) -> None:
            meta = dataset.metadata.get(qid, {})
            body = {**fill(template, text, meta), "size": size, "_source": False}
            # the subject a vague query is about, as an app would send it
            headers = {b"x-search-context": meta["context"].encode()} if meta.get("context") else {}
            async with gate:
                started = time.perf_counter()
                r = await client.post(f"/{index}/_search", json=body, headers=headers)
                took = (time.perf_counter() - started) * 1000
            if r.status_code != 200:
                raise EvalError(f"query {qid}: HTTP {r.status_code}: {r.text[:300]}")
            result.runs[qid] = [h["_id"] for h in r.json()["hits"]["hits"]]
            result.ms[qid] = took
            result.outcomes[r.headers.get("x-rerank", "direct")] += 1
            if "x-rerank-event" in r.headers:
                result.events[qid] = r.headers["x-rerank-event"]
            advance(1)

        await asyncio.gather(*(one(q, t) for q, t in dataset.queries.items()))
    result.runs = {q: result.runs[q] for q in dataset.queries}
    result.score(dataset.qrels)
    return result


def setting_config(config: Config, upstream: str | None, store: Path | None) -> Config:
    """The config as the evaluation runs it: loopback listeners on free ports, events in memory,
    the embedded cluster as upstream, a generous rerank budget, embeddings kept on disk."""
    data = config.model_dump(mode="json")
    data["listen"] = "127.0.0.1:0"
    data["admin"] = {"listen": "127.0.0.1:0"}
    data["events"] = {"buffer": max(100, data["events"]["buffer"])}
    if upstream is not None:
        data["upstream"]["url"] = upstream
    for r in data["routes"]:
        r["timeout_ms"] = max(r["timeout_ms"], EVAL_TIMEOUT_MS)
    for m in data["models"].values():
        if m["backend"] == "bi-encoder" and not m.get("embedding_store") and store is not None:
            m["embedding_store"] = str(store)
    return parse_config(data)


@asynccontextmanager
async def running_sidecar(
    config: Config,
    backends: Mapping[str, Backend] | None = None,
    config_path: Path | None = None,
) -> AsyncIterator[SidecarServer]:
    """A sidecar with ``config`` serving on loopback for the block, stopped after it.
    ``config_path`` is where the config came from: its rules files are found beside it."""
    from sidecar.server import SidecarServer

    server = SidecarServer(config, backends=backends, config_path=config_path, persist=False)
    task = asyncio.ensure_future(server.serve())
    ready = asyncio.ensure_future(server.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
        raise EvalError("the sidecar stopped while starting")
    try:
        yield server
    finally:
        server.stop()
        await task


async def run_setting(
    config: Config,
    index: str,
    dataset: Dataset,
    template: Mapping[str, Any],
    concurrency: int,
    advance: Callable[[int], None] = lambda n: None,
    backends: Mapping[str, Backend] | None = None,
    config_path: Path | None = None,
) -> Result:
    """Run the queries through a sidecar started with ``config``."""
    route_index = match_route(config.routes, [index])
    assert route_index is not None
    size = min(100, config.routes[route_index].window)
    async with running_sidecar(config, backends, config_path) as server:
        return await run_queries(server.proxy_url, index, dataset, template, size, concurrency, advance)
