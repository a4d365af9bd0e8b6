"""Remote models: the rerank APIs of vLLM, TEI, Infinity and Cohere, over pooled HTTP.

The sidecar stays stateless and sends raw query and documents; prompt templates, batching
on the GPU and model memory are the serving engine's business. Large candidate lists are
split into requests of at most ``max_docs_per_request`` that run concurrently (at most
``max_concurrency`` in flight per model); several URLs are used round-robin and a URL that
fails (no connection, or a 5xx) is skipped for ``cooldown_s``. Only connection errors are
retried, on the next URL: a 4xx is the request's fault and a timeout has spent the budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sidecar import tracing
from sidecar.config import RemoteModel
from sidecar.engine.protocol import Backend, EachQuery, ModelTimeout, Overloaded, Scored
from sidecar.engine.stats import BatchStats
from sidecar.remote_apis import APIS

log = logging.getLogger(__name__)

PATHS = {name: api.path for name, api in APIS.items()}


class RemoteError(Exception):
    """The server refused the request, failed, or answered something that is not its API's JSON."""


def parse_scores(api: str, payload: Any, count: int) -> list[float]:
    """One score per document, by each result's index; RemoteError unless every document has one."""
    entry = APIS[api]
    items = entry.items(payload)
    if not isinstance(items, list):
        raise RemoteError(f"unexpected answer: {str(payload)[:200]}")
    scores: list[float | None] = [None] * count
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get(entry.score_key) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or not isinstance(score, (int, float)):
            raise RemoteError(f"unexpected result: {str(item)[:200]}")
        scores[index] = float(score)
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise RemoteError(f"no score for {len(missing)} of {count} documents")
    return [s for s in scores if s is not None]


@dataclass
class Endpoint:
    """One server of a remote model and its health."""

    url: str
    down_until: float = 0.0  # monotonic time; skipped until then
    failures: int = 0
    last_error: str | None = None

    def available(self, now: float) -> bool:
        return now >= self.down_until


class RemoteScorer(EachQuery):
    """A remote model behind the same interface as a local one (see ``Scorer``)."""

    def __init__(
        self, name: str, spec: RemoteModel, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.name = name
        self.spec = spec
        self.backend: Backend | None = None  # no local weights
        self.api: str = spec.api
        self.path = APIS[spec.api].path
        self.endpoints = [Endpoint(u) for u in spec.remote_urls]
        self.per_request = spec.max_docs_per_request or APIS[spec.api].docs_per_request
        self.stats = BatchStats()
        self.requests = 0
        self.errors = 0
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(spec.max_concurrency)
        self._waiting = 0
        self._turn = 0

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a free slot."""
        return self._waiting

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.spec.headers}
        for header, env in self.spec.headers_env.items():
            headers[header] = self._secret(env)
        if self.spec.api_key_env:
            headers["authorization"] = f"Bearer {self._secret(self.spec.api_key_env)}"
        return headers

    def _secret(self, env: str) -> str:
        value = os.environ.get(env)
        if not value:
            raise RemoteError(f"environment variable {env} is not set")
        return value

    async def start(self) -> RemoteScorer:
        """Open the connection pool (servers are not contacted: they may come up later)."""
        limits = httpx.Limits(
            max_connections=self.spec.max_concurrency, max_keepalive_connections=self.spec.max_concurrency
        )
        self._client = httpx.AsyncClient(
            headers=self._headers(), limits=limits, transport=self._transport, follow_redirects=False
        )
        return self

    async def aclose(self) -> None:
        """Close the connections."""
        if self._client is not None:
            await self._client.aclose()

    def info(self) -> dict[str, Any]:
        """Servers and their state, requests and errors, for the health endpoint."""
        now = time.monotonic()
        return {
            "backend": "remote",
            "api": self.api,
            "model": self.spec.model,
            "queue_depth": self._waiting,
            "requests": self.requests,
            "errors": self.errors,
            "urls": [
                {
                    "url": e.url,
                    "up": e.available(now),
                    "cooldown_s": round(max(0.0, e.down_until - now), 1),
                    "failures": e.failures,
                    "last_error": e.last_error,
                }
                for e in self.endpoints
            ],
        }

    async def score_one(
        self, query: str, documents: Sequence[str], instruction: str | None, timeout_s: float
    ) -> Scored:
        """One query's scores with ``queue_ms`` (the longest wait for a request slot) and ``model_ms``
        (the servers' time after it)."""
        if not documents:
            return Scored([])
        deadline = time.monotonic() + timeout_s
        parts = [
            list(documents[i : i + self.per_request]) for i in range(0, len(documents), self.per_request)
        ]
        spans: list[tuple[float, float, float]] = []
        tasks = [asyncio.ensure_future(self._request(query, p, deadline, spans)) for p in parts]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        scores = [s for part in results for s in part]
        if not spans:
            return Scored(scores)
        start = min(s[0] for s in spans)
        queue_ms = max(s[1] - s[0] for s in spans) * 1000
        return Scored(scores, queue_ms, (max(s[2] for s in spans) - start) * 1000 - queue_ms)

    def _pick(self) -> Endpoint:
        """The next server round-robin, skipping those cooling down (all down: the soonest back)."""
        now = time.monotonic()
        n = len(self.endpoints)
        for k in range(n):
            e = self.endpoints[(self._turn + k) % n]
            if e.available(now):
                self._turn = (self._turn + k + 1) % n
                return e
        return min(self.endpoints, key=lambda e: e.down_until)

    def _failed(self, e: Endpoint, reason: str) -> None:
        e.failures += 1
        e.last_error = reason
        e.down_until = time.monotonic() + self.spec.cooldown_s
        self.errors += 1
        log.warning(
            "model %s: %s failed (%s); skipped for %.0f s", self.name, e.url, reason, self.spec.cooldown_s
        )

    async def _request(
        self, query: str, documents: list[str], deadline: float, spans: list[tuple[float, float, float]]
    ) -> list[float]:
        queued = time.monotonic()
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: taken at once
        elif self._waiting >= self.spec.max_queue:
            self.stats.overloaded += 1
            raise Overloaded(f"model {self.name!r}: {self._waiting} requests waiting for a server")
        else:
            self._waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), max(0.0, deadline - queued))
            except asyncio.TimeoutError:
                raise ModelTimeout(f"model {self.name!r}: no free slot within the budget") from None
            finally:
                self._waiting -= 1
        try:
            started = time.monotonic()
            scores = await self._send(query, documents, deadline)
            spans.append((queued, started, time.monotonic()))
            self.stats.batches += 1
            self.stats.pairs += len(documents)
            self.stats.last_batch_sizes.append(len(documents))
            return scores
        finally:
            self._slots.release()

    async def _send(self, query: str, documents: list[str], deadline: float) -> list[float]:
        assert self._client is not None, "start() first"
        body = APIS[self.api].request_body(self.spec.model, query, documents) | self.spec.extra_body
        tries = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelTimeout(f"model {self.name!r}: the budget ran out")
            e = self._pick()
            self.requests += 1
            try:
                with tracing.span(f"model {self.name}", {"server.address": e.url}, client=True):
                    r = await self._client.post(
                        e.url + self.path,
                        json=body,
                        timeout=min(left, self.spec.request_timeout_s),
                        headers=tracing.injected_dict() or None,
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                self._failed(e, f"connection: {type(exc).__name__}")
                tries += 1
                if tries > self.spec.retries:
                    raise RemoteError(f"{e.url}: cannot connect ({type(exc).__name__})") from None
                continue
            except httpx.TimeoutException:
                if time.monotonic() >= deadline:
                    raise ModelTimeout(f"model {self.name!r}: {e.url} took longer than the budget") from None
                self._failed(e, "timeout")
                raise RemoteError(f"{e.url}: no answer within {self.spec.request_timeout_s} s") from None
            if r.status_code >= 500:
                self._failed(e, f"HTTP {r.status_code}")
                raise RemoteError(f"{e.url}: HTTP {r.status_code}: {r.text[:200]}")
            if r.status_code != 200:
                self.errors += 1
                raise RemoteError(f"{e.url}: HTTP {r.status_code}: {r.text[:200]}")
            try:
                payload = r.json()
            except ValueError:
                self.errors += 1
                raise RemoteError(f"{e.url}: the answer is not JSON: {r.text[:200]}") from None
            e.last_error = None
            return parse_scores(self.api, payload, len(documents))
