"""A route's warm-up: at start its documents are read from the cluster and scored in the
background; once done, a first search embeds only its query (the bi-encoder holds the rest);
its progress is in health and stats; a cluster that refuses the read leaves the route serving."""

from __future__ import annotations

import time
from typing import Any

import httpx
from osmem_server import OsmemServer

from sidecar.engine.bi_encoder import BiEncoderBackend
from tests.conftest import BrokenBackend, RunningSidecar, SlowBackend, sidecar_config
from tui.screens.live import figures_line


def _route(indices: list[str], documents: int) -> dict[str, Any]:
    return {
        "indices": indices,
        "model": "minilm",
        "window": 12,
        "fields": ["title", "text"],
        "warmup": {"documents": documents},
    }


def _until_done(running: RunningSidecar, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{running.admin_url}/_sidecar/health").json()
        states = {w["state"] for w in health.get("warmup", {}).values()}
        if states and states <= {"done", "failed"}:
            return dict(health["warmup"])
        time.sleep(0.1)
    raise AssertionError("the warm-up did not end")


def test_a_warmed_up_route_embeds_only_the_query_of_its_first_search(osmem: OsmemServer) -> None:
    routes = [_route(["kb"], 1000), _route(["nothing-here"], 10) | {"name": "missing", "model": "minilm"}]
    running = RunningSidecar(
        sidecar_config(osmem.url, routes=routes), backends={"slow": SlowBackend(), "broken": BrokenBackend()}
    )
    try:
        warmup = _until_done(running)
        total = httpx.get(f"{osmem.url}/kb/_count").json()["count"]
        assert warmup["kb"] == {"state": "done", "documents": total, "total": total, "error": None}
        assert warmup["missing"]["state"] == "failed" and "HTTP 404" in warmup["missing"]["error"]
        backend = running.backend("minilm")
        assert isinstance(backend, BiEncoderBackend)
        before = backend.encoded
        r = httpx.post(f"{running.url}/kb/_search", json={"query": {"match": {"text": "lora rank"}}})
        assert r.headers["x-rerank"] == "applied"
        assert backend.encoded - before == 1  # the query; every document of the window was warm
        stats = httpx.get(f"{running.admin_url}/_sidecar/stats").json()
        assert stats["warmup"]["kb"]["state"] == "done"
        line = figures_line(None, stats)
        assert "warm-up kb" not in line and "warm-up missing failed" in line  # done leaves the line
        scoring = {"warmup": {"kb": {"state": "scoring", "documents": 64, "total": 210}}}
        assert "warm-up kb 64/210" in figures_line(None, scoring)
        # the route that could not be read still serves (its index does not exist: the cluster's 404)
        assert httpx.post(f"{running.url}/nothing-here/_search", json={}).status_code == 404
    finally:
        running.close()
