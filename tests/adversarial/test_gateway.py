"""The rest of defect 16: a write whose answer was lost says ``"applied": "unknown"`` as a gateway
should, health says ``degraded`` while a model's circuit is open, and a serving engine that hangs
trips its circuit instead of making every search wait out its budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from osmem_server import OsmemServer

from sidecar.config import parse_config
from testkit.fleet import free_port
from tests.adversarial.conftest import poll
from tests.conftest import (
    CORPUS,
    BrokenBackend,
    RunningSidecar,
    SlowBackend,
    ThreadedApp,
    index_corpus,
    sidecar_config,
)


@pytest.fixture
def hanging() -> Iterator[ThreadedApp]:
    """A server that takes every request and never answers in time (a cluster or an engine)."""

    async def hang(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    server = ThreadedApp(app)
    yield server
    server.stop()


def test_a_write_whose_answer_was_lost_says_applied_unknown(hanging: ThreadedApp) -> None:
    cfg = parse_config(
        {
            "listen": "127.0.0.1:0",
            "admin": {"listen": "127.0.0.1:0"},
            "upstream": {"url": f"http://127.0.0.1:{hanging.port}", "timeout_s": 0.3},
        }
    )
    running = RunningSidecar(cfg)
    try:
        r = httpx.put(f"{running.url}/kb/_doc/1", json={"title": "x"}, timeout=10)
        assert r.status_code == 504 and r.json()["applied"] == "unknown"
        r = httpx.get(f"{running.url}/kb/_doc/1", timeout=10)  # a read: nothing to say
        assert r.status_code == 504 and "applied" not in r.json()
    finally:
        running.close()
    cfg = parse_config(
        {
            "listen": "127.0.0.1:0",
            "admin": {"listen": "127.0.0.1:0"},
            "upstream": {"url": f"http://127.0.0.1:{free_port()}"},  # nothing listens: nothing was sent
        }
    )
    running = RunningSidecar(cfg)
    try:
        r = httpx.put(f"{running.url}/kb/_doc/1", json={"title": "x"}, timeout=10)
        assert r.status_code == 502 and r.json()["applied"] is False
    finally:
        running.close()


def test_health_is_degraded_while_a_circuit_is_open(osmem: OsmemServer) -> None:
    running = RunningSidecar(
        sidecar_config(osmem.url), backends={"slow": SlowBackend(), "broken": BrokenBackend()}
    )
    try:
        assert httpx.get(f"{running.admin_url}/_sidecar/health").json()["status"] == "ok"
        for _ in range(6):  # the broken backend raises: after 5 errors its circuit opens
            httpx.post(f"{running.url}/broken/_search", json={"query": {"match": {"text": "gpu"}}})
        health = httpx.get(f"{running.admin_url}/_sidecar/health").json()
        assert health["models"]["broken"]["circuit"]["state"] == "open"
        assert health["status"] == "degraded" and any("circuit" in p for p in health["problems"])
    finally:
        running.close()


def test_a_hanging_engine_trips_its_circuit(osmem: OsmemServer, hanging: ThreadedApp) -> None:
    index_corpus(osmem.url, "adv-remote", CORPUS)
    cfg = parse_config(
        {
            "listen": "127.0.0.1:0",
            "admin": {"listen": "127.0.0.1:0"},
            "upstream": {"url": osmem.url},
            "models": {
                "tei": {
                    "backend": "remote",
                    "api": "tei",
                    "url": f"http://127.0.0.1:{hanging.port}",
                    "circuit_failures": 3,
                }
            },
            "routes": [
                {
                    "indices": ["adv-remote"],
                    "model": "tei",
                    "window": 5,
                    "fields": ["title"],
                    "timeout_ms": 300,
                }
            ],
        }
    )
    running = RunningSidecar(cfg)
    try:
        reasons = []
        took = []
        for _ in range(6):
            started = time.monotonic()
            r = httpx.post(f"{running.url}/adv-remote/_search", json={"query": {"match": {"text": "gpu"}}})
            took.append(time.monotonic() - started)
            reasons.append(r.headers["x-rerank-reason"])
        assert reasons[:3] == ["timeout"] * 3 and reasons[3:] == ["circuit-open"] * 3
        assert max(took[3:]) < 0.25  # no longer waiting out the budget
        poll(lambda: httpx.get(f"{running.admin_url}/_sidecar/health").json()["status"] == "degraded")
    finally:
        running.close()
        httpx.delete(f"{osmem.url}/adv-remote")
