"""A config reloaded while searches are in flight: each search is served wholly by one config
(its route, rewriter and model), and searches on the old one finish before its parts close."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

import httpx
from aiohttp import web
from osmem_server import OsmemServer

from tests.conftest import RunningSidecar, SlowBackend, ThreadedApp

QUERY = "lora rank"
# the models' scores as the sidecar reports them: through their calibration, sigmoid(raw)
A, B = 1 / (1 + math.exp(-0.2)), 1 / (1 + math.exp(-0.9))


class Tagged(SlowBackend):
    """A slow model whose scores say which model it is: every document gets ``score``."""

    def __init__(self, score: float, delay_s: float) -> None:
        super().__init__(delay_s)
        self.value = score

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        super().score(query, documents, instruction)
        return [self.value] * len(documents)


def slow_relay(upstream: str, delay_s: float) -> ThreadedApp:
    """The cluster behind a relay that holds every search for ``delay_s``: a reload lands
    while the sidecar waits for the candidates."""

    async def relay(request: web.Request) -> web.Response:
        body = await request.read()
        if request.path.endswith(("_search", "_msearch")):
            await asyncio.sleep(delay_s)
        async with httpx.AsyncClient(base_url=upstream) as client:
            r = await client.request(
                request.method,
                request.path_qs,
                content=body,
                headers={"content-type": request.headers.get("content-type", "application/json")},
            )
        return web.Response(status=r.status_code, body=r.content, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    return ThreadedApp(app)


def _config(upstream: str, first: str, second: str, word: str) -> dict[str, Any]:
    """kb on model ``first`` with a synonym rule making ``word``; docs-* on ``second``."""
    models = {
        m: {"backend": "bi-encoder", "model": "unused", "calibration": {"center": 0, "scale": 1}}
        for m in ("a", "b")
    }
    route = {"fields": ["title", "text"], "window": 5, "fusion": "replace", "timeout_ms": 20000}
    return {
        "listen": "127.0.0.1:0",
        "upstream": {"url": upstream},
        "admin": {"listen": "127.0.0.1:0"},
        "models": models,
        "routes": [
            {
                **route,
                "indices": ["kb"],
                "model": first,
                "rewrite": {"synonyms": [[QUERY, word]], "retrieval": "original"},
            },
            {**route, "indices": ["docs-*"], "model": second},
        ],
    }


async def test_a_reload_mid_search_never_mixes_two_configs(osmem: OsmemServer) -> None:
    from sidecar.config import parse_config

    relay = slow_relay(osmem.url, 0.5)
    upstream = f"http://127.0.0.1:{relay.port}"
    old = _config(upstream, "a", "b", "alpha")
    new = _config(upstream, "b", "a", "beta")
    # one route fewer in the new config: an _msearch planned on the old one still finds its route
    new["routes"] = [new["routes"][0]]
    new["models"] = {"b": new["models"]["b"], "a": new["models"]["a"]}
    running = RunningSidecar(parse_config(old), backends={"a": Tagged(0.2, 0.4), "b": Tagged(0.9, 0.4)})
    body = {"query": {"match": {"text": QUERY}}, "size": 3}
    msearch = (
        json.dumps({"index": "kb"})
        + "\n"
        + json.dumps(body)
        + "\n"
        + json.dumps({"index": "docs-1"})
        + "\n"
        + json.dumps(body)
        + "\n"
    )
    try:
        async with httpx.AsyncClient(timeout=60) as client:

            async def search() -> httpx.Response:
                return await client.post(
                    f"{running.url}/kb/_search", json=body, headers={"X-Rerank-Explain": "1"}
                )

            async def multi() -> httpx.Response:
                return await client.post(
                    f"{running.url}/_msearch",
                    content=msearch,
                    headers={"content-type": "application/x-ndjson"},
                )

            early = [asyncio.ensure_future(search()) for _ in range(3)] + [asyncio.ensure_future(multi())]
            await asyncio.sleep(0.25)  # the first searches wait for their candidates now
            put = await client.put(f"{running.admin_url}/_sidecar/config", json=new)
            assert put.status_code == 200, put.text
            late = [asyncio.ensure_future(search()) for _ in range(2)]
            responses = await asyncio.gather(*early, *late)
    finally:
        running.close()
        relay.stop()
    seen = set()
    for r in [*responses[:3], *responses[4:]]:
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied", r.text
        model = r.headers["x-rerank-model"]
        variants = [v["text"] for v in r.json()["_rerank"]["variants"]]
        scores = {h["_rerank"]["score"] for h in r.json()["hits"]["hits"]}
        # route, rewriter and model all from one config
        assert (model, variants, scores) in (("a", ["alpha"], {A}), ("b", ["beta"], {B})), (
            model,
            variants,
            scores,
        )
        seen.add(model)
    assert seen == {"a", "b"}
    multi_response = responses[3]
    assert multi_response.status_code == 200, multi_response.text
    assert multi_response.headers["x-rerank-msearch"] == "applied,applied"
    subs = multi_response.json()["responses"]
    assert {h["_rerank"]["score"] for h in subs[0]["hits"]["hits"]} == {A}  # kb on the old model a
    assert {h["_rerank"]["score"] for h in subs[1]["hits"]["hits"]} == {
        B
    }  # docs-1: a route the new config lacks
