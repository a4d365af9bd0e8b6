"""OpenTelemetry traces: a real OTLP/HTTP receiver on loopback decodes what the sidecar exports.
One reranked search is one tree under the client's trace id (every stage a span), the trace goes
on to the cluster and to a remote model engine in their ``traceparent``, a redacted route's span
holds no query, and a pass-through request is traced only when its trace is sampled."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from osmem_server import OsmemServer

from sidecar.logs import JsonFormatter
from tests.conftest import (
    CORPUS,
    BrokenBackend,
    RunningSidecar,
    SlowBackend,
    ThreadedApp,
    index_corpus,
    sidecar_config,
)
from tests.engine.test_remote import RerankServer

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


class Receiver:
    """An OTLP/HTTP trace receiver: every span it was sent, decoded from protobuf."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.services: set[str] = set()

        async def traces(request: web.Request) -> web.Response:
            assert request.headers["content-type"] == "application/x-protobuf"
            message = ExportTraceServiceRequest()
            message.ParseFromString(await request.read())
            for resource in message.resource_spans:
                for a in resource.resource.attributes:
                    if a.key == "service.name":
                        self.services.add(a.value.string_value)
                for scope in resource.scope_spans:
                    for s in scope.spans:
                        self.spans.append(
                            {
                                "name": s.name,
                                "trace": s.trace_id.hex(),
                                "id": s.span_id.hex(),
                                "parent": s.parent_span_id.hex(),
                                "kind": s.kind,
                                "start": s.start_time_unix_nano,
                                "end": s.end_time_unix_nano,
                                "attributes": {a.key: _value(a.value) for a in s.attributes},
                            }
                        )
            return web.Response(status=200, content_type="application/x-protobuf")

        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        self.app = ThreadedApp(app)
        self.url = f"http://127.0.0.1:{self.app.port}"

    def trace(self, trace_id: str, root: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The spans of one trace, once its ``root`` span has come (they are exported in batches)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = [s for s in self.spans if s["trace"] == trace_id]
            if any(s["name"] == root for s in spans):
                time.sleep(0.3)  # the rest of its batch
                return [s for s in self.spans if s["trace"] == trace_id]
            time.sleep(0.05)
        raise AssertionError(f"no {root!r} span of trace {trace_id} in {len(self.spans)} spans")


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Relay:
    """A real HTTP hop between the sidecar and the cluster that keeps each request's headers."""

    def __init__(self, upstream: str) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

        async def relay(request: web.Request) -> web.Response:
            self.seen.append((request.path, dict(request.headers)))
            async with httpx.AsyncClient(base_url=upstream) as client:
                r = await client.request(
                    request.method,
                    request.path_qs,
                    content=await request.read(),
                    headers={"content-type": request.headers.get("content-type", "application/json")},
                )
            return web.Response(status=r.status_code, body=r.content, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", relay)
        self.app = ThreadedApp(app)
        self.url = f"http://127.0.0.1:{self.app.port}"


def test_a_redacted_route_puts_no_query_on_its_span(osmem: OsmemServer) -> None:
    # first in the module: tracing is the process's, and this sidecar ends before the next starts
    receiver = Receiver()
    config = sidecar_config(osmem.url, tracing={"endpoint": receiver.url}, events={"redact": True})
    running = RunningSidecar(config, backends=_faults())
    try:
        trace = "4" * 32
        _search(running.url, "kb", "secret project codename", f"00-{trace}-{PARENT}-01")
        spans = receiver.trace(trace, "search")
        assert not any("secret" in json.dumps(s["attributes"]) for s in spans)
        (root,) = [s for s in spans if s["name"] == "search"]
        assert "rerank.query" not in root["attributes"] and root["attributes"]["rerank.route"] == "kb,docs-*"
        # sample_ratio 1.0 (the default): a search without a traceparent starts a trace of its own
        before = len(receiver.spans)
        r = _search(running.url, "kb", "adapters", None)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            s["name"] == "search" and s["attributes"].get("rerank.event") == r.headers["x-rerank-event"]
            for s in receiver.spans[before:]
        ):
            time.sleep(0.05)
        (own,) = [
            s
            for s in receiver.spans[before:]
            if s["name"] == "search" and s["attributes"].get("rerank.event") == r.headers["x-rerank-event"]
        ]
        assert own["parent"] == "" and own["trace"] not in (trace, TRACE)
    finally:
        running.close()
        receiver.app.stop()


@pytest.fixture(scope="module")
def traced(osmem: OsmemServer) -> Iterator[tuple[RunningSidecar, Receiver, Relay, RerankServer]]:
    receiver, relay, engine = Receiver(), Relay(osmem.url), RerankServer("tei")
    config = sidecar_config(relay.url)
    data = json.loads(config.model_dump_json())
    data["tracing"] = {"endpoint": receiver.url, "sample_ratio": 0.0, "service_name": "search-sidecar"}
    data["models"]["engine"] = {"backend": "remote", "api": "tei", "url": engine.url}
    data["routes"].append(
        {"indices": ["remote-*"], "model": "engine", "window": 10, "fields": ["title", "text"]}
    )
    from sidecar.config import parse_config

    running = RunningSidecar(parse_config(data), backends=_faults())
    yield running, receiver, relay, engine
    running.close()
    for part in (receiver.app, relay.app):
        part.stop()
    engine.stop()


def _search(url: str, index: str, query: str, traceparent: str | None) -> httpx.Response:
    headers = {"traceparent": traceparent} if traceparent else {}
    body = {"query": {"match": {"text": query}}, "size": 3}
    r = httpx.post(f"{url}/{index}/_search", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r


def _children(spans: list[dict[str, Any]], parent: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans if s["parent"] == parent["id"]}


def test_a_reranked_search_is_one_tree_under_the_clients_trace(
    traced: tuple[RunningSidecar, Receiver, Relay, RerankServer], osmem: OsmemServer
) -> None:
    sidecar, receiver, relay, _ = traced
    r = _search(sidecar.url, "kb", "how do adapters fine-tune a model", f"00-{TRACE}-{PARENT}-01")
    assert r.headers["x-rerank"] == "applied"
    spans = receiver.trace(TRACE, "search")
    assert receiver.services == {"search-sidecar"}
    (root,) = [s for s in spans if s["name"] == "search"]
    assert root["parent"] == PARENT and root["kind"] == 2  # SERVER, a child of the client's span
    attrs = root["attributes"]
    assert attrs["rerank.status"] == "applied" and attrs["rerank.route"] == "kb,docs-*"
    assert attrs["rerank.query"] == "how do adapters fine-tune a model"
    assert attrs["rerank.event"] == r.headers["x-rerank-event"]
    assert attrs["http.response.status_code"] == 200
    stages = _children(spans, root)
    assert {"plan", "rewrite", "cluster POST", "score", "fusion", "page", "response"} <= set(stages)
    cluster = stages["cluster POST"]
    assert cluster["kind"] == 3  # CLIENT
    # the cluster got the trace, as a child of the sidecar's span of that call
    sent = [h for path, h in relay.seen if path.endswith("/_search")][-1]
    assert sent["traceparent"] == f"00-{TRACE}-{cluster['id']}-01"
    score = _children(spans, stages["score"])
    assert set(score) == {"queue", "model"}
    model = score["model"]["attributes"]
    assert model["rerank.batch_size"] >= 1 and model["rerank.queries"] == 1
    # the stages in the order they ran, inside the search
    order = [stages[n]["start"] for n in ("plan", "rewrite", "cluster POST", "score", "fusion", "page")]
    assert order == sorted(order)
    assert score["queue"]["end"] <= score["model"]["start"] + 1_000_000
    assert all(root["start"] <= s["start"] and s["end"] <= root["end"] for s in stages.values())


def test_the_trace_goes_on_to_a_remote_model_engine(
    traced: tuple[RunningSidecar, Receiver, Relay, RerankServer], osmem: OsmemServer
) -> None:
    sidecar, receiver, _, engine = traced
    index_corpus(osmem.url, "remote-kb", CORPUS)
    trace = "1" * 32
    r = _search(sidecar.url, "remote-kb", "adapters", f"00-{trace}-{PARENT}-01")
    assert r.headers["x-rerank"] == "applied"
    spans = receiver.trace(trace, "search")
    (call,) = [s for s in spans if s["name"] == "model engine"]
    assert call["kind"] == 3
    assert engine.requests[-1]["headers"]["traceparent"] == f"00-{trace}-{call['id']}-01"


def test_unsampled_and_untraced_requests_leave_no_spans_and_the_clients_header_passes(
    traced: tuple[RunningSidecar, Receiver, Relay, RerankServer],
) -> None:
    sidecar, receiver, relay, _ = traced
    quiet = "2" * 32
    _search(sidecar.url, "kb", "adapters", f"00-{quiet}-{PARENT}-00")  # the client did not sample it
    httpx.get(f"{sidecar.url}/kb/_count", headers={"traceparent": f"00-{quiet}-{PARENT}-00"}, timeout=30)
    _search(sidecar.url, "kb", "adapters", None)  # no trace, and sample_ratio 0 for new ones
    # a sampled pass-through request is traced: its span and the call to the cluster
    sampled = "3" * 32
    count = httpx.get(f"{sidecar.url}/kb/_count", headers={"traceparent": f"00-{sampled}-{PARENT}-01"})
    assert count.status_code == 200
    spans = receiver.trace(sampled, "GET")
    (root,) = [s for s in spans if s["name"] == "GET"]
    assert root["attributes"]["url.path"] == "/kb/_count"
    assert [s["name"] for s in _children(spans, root).values()] == ["cluster GET"]
    assert not [s for s in receiver.spans if s["trace"] == quiet]
    # unsampled: the cluster gets the client's own traceparent, as it would going direct
    sent = [h for path, h in relay.seen if path == "/kb/_count"]
    assert sent[0]["traceparent"] == f"00-{quiet}-{PARENT}-00"


def _faults() -> dict[str, Any]:
    return {"slow": SlowBackend(), "broken": BrokenBackend()}


def test_json_log_lines_carry_the_trace_the_route_and_the_reason(
    traced: tuple[RunningSidecar, Receiver, Relay, RerankServer],
) -> None:
    sidecar, receiver, _, _ = traced
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sidecar")
    logger.addHandler(handler)
    try:
        trace = "5" * 32
        r = _search(sidecar.url, "broken", "adapters", f"00-{trace}-{PARENT}-01")
        assert r.headers["x-rerank"] == "fallback"
        spans = receiver.trace(trace, "search")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (failed,) = [line for line in lines if line["message"].startswith("model broken failed")]
    assert failed["level"] == "warning" and failed["logger"] == "sidecar.search.rerank"
    assert failed["route"] == "broken" and failed["reason"] == "model-error"
    assert failed["trace_id"] == trace
    (root,) = [s for s in spans if s["name"] == "search"]
    assert failed["span_id"] == root["id"] and failed["event"] == root["attributes"]["rerank.event"]
