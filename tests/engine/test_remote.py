"""Remote models against small loopback servers that speak each API's documented JSON:
vLLM /v1/rerank and /score, TEI /rerank, Infinity /rerank, Cohere v2 /v2/rerank."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from osmem_server import OsmemServer

from sidecar.cli import main
from sidecar.config import ConfigError, RemoteModel, parse_config
from sidecar.engine.batcher import ModelTimeout, Overloaded
from sidecar.engine.registry import make_scorer, model_calibration
from sidecar.engine.remote import PATHS, RemoteError, RemoteScorer
from tests.conftest import RunningSidecar, ThreadedApp, sidecar_config
from tests.engine.scoring import scores_of

APIS = ("vllm-rerank", "vllm-score", "tei", "infinity", "cohere")
KEY = "co-test-key-5f1e2d"


def oracle(query: str, doc: str) -> float:
    """The fake servers' relevance: shared words, ties broken by length."""
    return len(set(query.lower().split()) & set(doc.lower().split())) + len(doc) / 10_000


class RerankServer:
    """One API on loopback, in its own thread and loop (so a sidecar thread can call it too).
    Records every request; ``status``, ``delay_s`` and ``max_docs`` drive the faults."""

    def __init__(self, api: str, port: int = 0) -> None:
        self.api = api
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.delay_s = 0.0
        self.max_docs: int | None = 32 if api == "tei" else None  # TEI's --max-client-batch-size
        self.in_flight = self.peak = 0
        self._start(port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post(PATHS[self.api], self._handle)
        self.server = ThreadedApp(app, port)
        self.port = self.server.port

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self._start(self.port)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if self.status != 200:
            return web.json_response({"error": "boom", "error_type": "Backend"}, status=self.status)
        if self.api == "cohere" and request.headers.get("authorization") != f"Bearer {KEY}":
            return web.json_response({"message": "invalid api token"}, status=401)
        if self.api == "vllm-score":
            query, docs = body["text_1"], body["text_2"]
        else:
            query, docs = body["query"], body["texts" if self.api == "tei" else "documents"]
        if self.max_docs is not None and len(docs) > self.max_docs:
            msg = f"batch size {len(docs)} > maximum allowed batch size {self.max_docs}"
            return web.json_response({"error": msg, "error_type": "Validation"}, status=413)
        scores = [oracle(query, d) for d in docs]
        ranked = sorted(range(len(docs)), key=lambda i: -scores[i])  # servers answer best first
        top_n = body.get("top_n") or len(docs)
        if self.api == "tei":
            return web.json_response([{"index": i, "score": scores[i]} for i in ranked])
        if self.api == "vllm-score":
            data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
            return web.json_response(
                {"id": "score-1", "object": "list", "created": 1, "model": body.get("model"), "data": data}
            )
        results = [{"index": i, "relevance_score": scores[i]} for i in ranked[:top_n]]
        if self.api == "vllm-rerank":
            for r in results:
                r["document"] = {"text": docs[r["index"]]}
            return web.json_response({"id": "rerank-1", "model": body.get("model"), "results": results})
        if self.api == "infinity":
            return web.json_response({"object": "rerank", "results": results, "model": "m", "id": "i-1"})
        return web.json_response(
            {"id": "co-1", "results": results, "meta": {"api_version": {"version": "2"}}}
        )


@pytest.fixture
def servers() -> Iterator[list[RerankServer]]:
    made: list[RerankServer] = []
    yield made
    for s in made:
        s.stop()


def spec(api: str, urls: list[str], **extra: Any) -> RemoteModel:
    model = {"cohere": "rerank-v3.5", "tei": None}.get(api, "Qwen/Qwen3-Reranker-0.6B")
    data: dict[str, Any] = {"backend": "remote", "api": api, "urls": urls, "model": model}
    if api == "cohere":
        data["api_key_env"] = "COHERE_TEST_KEY"
    data.update(extra)
    return RemoteModel.model_validate(data)


DOCS = [
    f"document {i} about {'gpu memory' if i % 3 == 0 else 'shipping rates'} number {i}" for i in range(250)
]


@pytest.mark.parametrize("api", APIS)
async def test_each_api_scores_land_on_the_right_documents(
    api: str, servers: list[RerankServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COHERE_TEST_KEY", KEY)
    server = RerankServer(api)
    servers.append(server)
    scorer = make_scorer("m", spec(api, [server.url]))  # behind the score cache, as the service has it
    await scorer.start()
    try:
        query = "gpu memory usage"
        scores = await scores_of(scorer, query, DOCS, None, 10.0)
        assert scores == [oracle(query, d) for d in DOCS]
        first = server.requests[0]
        assert first["path"] == PATHS[api]
        body = first["body"]
        if api == "tei":
            assert set(body) == {"query", "texts", "truncate", "raw_scores"} and body["truncate"] is True
        elif api == "vllm-score":
            assert body["text_1"] == query and body["model"] == "Qwen/Qwen3-Reranker-0.6B"
        else:
            assert body["query"] == query and isinstance(body["documents"], list) and "model" in body
        # split into requests of at most 100 documents (32 for TEI), every document sent once
        per = 32 if api == "tei" else 100
        sizes = [
            len(r["body"].get("texts") or r["body"].get("documents") or r["body"]["text_2"])
            for r in server.requests
        ]
        assert max(sizes) <= per and sum(sizes) == len(DOCS) and len(sizes) == -(-len(DOCS) // per)
        if api == "cohere":
            assert first["headers"]["Authorization"] == f"Bearer {KEY}"
        # the same pairs again come from the score cache: no new request
        before = len(server.requests)
        assert await scores_of(scorer, query, DOCS[:10], None, 10.0) == scores[:10]
        assert len(server.requests) == before and scorer.stats.cache_hits == 10
    finally:
        await scorer.aclose()


async def test_an_unsplit_list_is_refused_by_tei_and_the_error_is_clear(servers: list[RerankServer]) -> None:
    server = RerankServer("tei")
    servers.append(server)
    scorer = await RemoteScorer("m", spec("tei", [server.url], max_docs_per_request=100)).start()
    try:
        with pytest.raises(RemoteError, match=r"HTTP 413: .*maximum allowed batch size 32"):
            await scores_of(scorer, "q", DOCS[:40], None, 5.0)
        assert len(server.requests) == 1  # a 4xx is never retried
    finally:
        await scorer.aclose()


async def test_a_slow_server_times_out_within_the_budget(servers: list[RerankServer]) -> None:
    server = RerankServer("vllm-rerank")
    server.delay_s = 2.0
    servers.append(server)
    scorer = await RemoteScorer("m", spec("vllm-rerank", [server.url])).start()
    try:
        started = time.monotonic()
        with pytest.raises(ModelTimeout):
            await scores_of(scorer, "q", DOCS[:5], None, 0.3)
        assert time.monotonic() - started < 1.0
    finally:
        await scorer.aclose()


async def test_requests_in_flight_are_bounded_and_a_long_queue_is_refused(
    servers: list[RerankServer],
) -> None:
    server = RerankServer("vllm-score")
    server.delay_s = 0.2
    servers.append(server)
    scorer = await RemoteScorer("m", spec("vllm-score", [server.url], max_concurrency=2, max_queue=3)).start()
    try:
        tasks = [scores_of(scorer, f"q {i}", DOCS[:2], None, 5.0) for i in range(5)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, list) for r in results) and server.peak == 2
        tasks = [scores_of(scorer, f"more {i}", DOCS[:2], None, 5.0) for i in range(8)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        refused = [r for r in results if isinstance(r, Overloaded)]
        assert len(refused) == 3 and scorer.stats.overloaded == 3  # 2 in flight, 3 waiting, 3 refused
    finally:
        await scorer.aclose()


async def test_a_5xx_fails_the_request_and_cools_the_url_down(servers: list[RerankServer]) -> None:
    a, b = RerankServer("vllm-rerank"), RerankServer("vllm-rerank")
    servers += [a, b]
    a.status = 503
    scorer = await RemoteScorer("m", spec("vllm-rerank", [a.url, b.url], cooldown_s=30)).start()
    try:
        with pytest.raises(RemoteError, match="HTTP 503"):
            await scores_of(scorer, "q one", DOCS[:5], None, 5.0)
        assert len(a.requests) == 1 and not b.requests  # no retry on a 5xx
        for i in range(3):  # a is skipped while it cools down
            await scores_of(scorer, f"q {i}", DOCS[:5], None, 5.0)
        assert len(a.requests) == 1 and len(b.requests) == 3
        info = scorer.info()
        assert [u["up"] for u in info["urls"]] == [False, True] and info["urls"][0][
            "last_error"
        ] == "HTTP 503"
    finally:
        await scorer.aclose()


async def test_a_url_going_down_and_coming_back(servers: list[RerankServer]) -> None:
    a, b = RerankServer("tei"), RerankServer("tei")
    servers += [a, b]
    scorer = await RemoteScorer("m", spec("tei", [a.url, b.url], cooldown_s=0.5)).start()
    try:
        for i in range(4):  # round-robin over both
            await scores_of(scorer, f"spread {i}", DOCS[:3], None, 5.0)
        assert len(a.requests) == 2 and len(b.requests) == 2
        a.stop()
        for i in range(4):  # a refuses connections: retried on b, then skipped
            assert await scores_of(scorer, f"down {i}", DOCS[:3], None, 5.0) == [
                oracle(f"down {i}", d) for d in DOCS[:3]
            ]
        assert len(b.requests) == 6 and scorer.info()["urls"][0]["failures"] == 1
        a.restart()
        await asyncio.sleep(0.6)  # past the cooldown
        for i in range(4):
            await scores_of(scorer, f"back {i}", DOCS[:3], None, 5.0)
        assert len(a.requests) == 4  # 2 before, 2 after it came back
    finally:
        await scorer.aclose()


async def test_every_url_down_is_a_model_error_not_a_hang(servers: list[RerankServer]) -> None:
    a = RerankServer("infinity")
    url = a.url
    a.stop()
    scorer = await RemoteScorer("m", spec("infinity", [url], retries=2)).start()
    try:
        started = time.monotonic()
        with pytest.raises(RemoteError, match="cannot connect"):
            await scores_of(scorer, "q", DOCS[:3], None, 5.0)
        assert time.monotonic() - started < 2.0
    finally:
        await scorer.aclose()


async def test_the_cohere_key_is_sent_and_never_logged(
    servers: list[RerankServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("COHERE_TEST_KEY", KEY)
    server = RerankServer("cohere")
    servers.append(server)
    caplog.set_level(logging.DEBUG)
    scorer = await RemoteScorer("co", spec("cohere", [server.url])).start()
    try:
        await scores_of(scorer, "shipping rates", DOCS[:4], None, 5.0)
        server.status = 500
        with pytest.raises(RemoteError) as err:
            await scores_of(scorer, "other", DOCS[:4], None, 5.0)
        assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
        assert KEY not in caplog.text and KEY not in str(err.value) and KEY not in str(scorer.info())
    finally:
        await scorer.aclose()
    monkeypatch.delenv("COHERE_TEST_KEY")
    with pytest.raises(RemoteError, match="environment variable COHERE_TEST_KEY is not set"):
        await RemoteScorer("co", spec("cohere", [server.url])).start()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"backend": "remote", "url": "http://x:1"}, "api: required for backend remote"),
        ({"backend": "remote", "api": "tei"}, "url or urls: exactly one is required"),
        ({"backend": "remote", "api": "tei", "url": "x:1"}, "expected an http:// or https:// URL"),
        ({"backend": "remote", "api": "cohere", "url": "https://api.cohere.com"}, "model and api_key_env"),
        ({"backend": "remote", "api": "grpc", "url": "http://x:1"}, "api"),
        ({"backend": "cross-encoder", "model": "m", "url": "http://x:1"}, "url: only for backend remote"),
        ({"backend": "cross-encoder"}, "model: required key is missing"),
    ],
)
def test_remote_config_errors_name_the_key(model: dict[str, Any], message: str) -> None:
    data = {"models": {"m": model}, "routes": [{"indices": ["*"], "model": "m", "fields": ["text"]}]}
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(data)
    assert str(err.value).startswith("models.m")


@pytest.fixture
def remote_sidecar(
    osmem: OsmemServer, servers: list[RerankServer]
) -> Iterator[tuple[RunningSidecar, RerankServer]]:
    server = RerankServer("vllm-rerank")
    servers.append(server)
    cfg = sidecar_config(
        osmem.url,
        models={
            "gpu": {"backend": "remote", "api": "vllm-rerank", "url": server.url, "model": "qwen3-reranker"}
        },
        routes=[
            {
                "indices": ["kb"],
                "model": "gpu",
                "window": 12,
                "fields": ["title", "text"],
                "timeout_ms": 500,
                "fusion": "replace",  # the engine's own order: what the test checks
            }
        ],
    )
    running = RunningSidecar(cfg)
    yield running, server
    running.close()


def test_through_the_proxy_a_remote_model_reranks_end_to_end(
    remote_sidecar: tuple[RunningSidecar, RerankServer],
) -> None:
    running, server = remote_sidecar
    query = "GPU memory"
    with httpx.Client(base_url=running.url, timeout=30) as c:
        r = c.post("/kb/_search", json={"query": {"match": {"text": query}}, "size": 5})
        assert r.status_code == 200 and r.headers["x-rerank"] == "applied", r.headers
        assert r.headers["x-rerank-model"] == "gpu"
        hits = r.json()["hits"]["hits"]
        sent = server.requests[-1]["body"]
        assert sent["model"] == "qwen3-reranker" and sent["query"] == query
        texts = [f"{h['_source']['title']}\n{h['_source']['text']}" for h in hits]
        expected = sorted((oracle(query, t) for t in sent["documents"]), reverse=True)[:5]
        assert [oracle(query, t) for t in texts] == expected  # the page is the server's order
        health = httpx.get(f"{running.admin_url}/_sidecar/health").json()
        assert health["models"]["gpu"]["backend"] == "remote" and health["models"]["gpu"]["requests"] >= 1
        server.delay_s = 2.0  # past the route's 500 ms budget: the cluster's order, flagged
        r = c.post("/kb/_search", json={"query": {"match": {"text": "memory limit"}}, "size": 5})
        assert r.status_code == 200 and r.headers["x-rerank"] == "fallback"
        assert r.headers["x-rerank-reason"] == "timeout"
        server.delay_s, server.status = 0.0, 500
        r = c.post("/kb/_search", json={"query": {"match": {"text": "pod restart"}}, "size": 5})
        assert r.status_code == 200 and r.headers["x-rerank-reason"] == "model-error"


def test_the_rerank_command_ranks_through_a_remote_model(
    servers: list[RerankServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = RerankServer("tei")
    servers.append(server)
    cfg = tmp_path / "remote.yaml"
    cfg.write_text(f"models:\n  tei:\n    backend: remote\n    api: tei\n    url: {server.url}\n")
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS[:40]) + "\n")
    args = [
        "rerank",
        "--config",
        str(cfg),
        "--query",
        "gpu memory",
        "--docs",
        str(docs),
        "--format",
        "json",
        "--quiet",
    ]
    assert main(args) == 0
    ranked = json.loads(capsys.readouterr().out)
    scores = [r["score"] for r in ranked[0]["ranking"]]
    assert scores == sorted((oracle("gpu memory", d) for d in DOCS[:40]), reverse=True)
    # TEI takes 32 documents a request: 40 go as 32 and 8, sent at once (either may arrive first)
    assert sorted(len(r["body"]["texts"]) for r in server.requests) == [8, 32]
    server.stop()
    servers.remove(server)
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("rerank-sidecar rerank: models.tei: ")


def test_the_readme_remote_block_is_a_valid_model() -> None:
    from tests import docs

    readme = docs.text()
    section = readme[readme.index("## Remote inference engines") :]
    block = section[section.index("```yaml") + 7 : section.index("```", section.index("```yaml") + 7)]
    data = yaml.safe_load(block)
    data["routes"] = [{"indices": ["*"], "model": "qwen3", "fields": ["text"]}]
    cfg = parse_config(data)
    assert cfg.models["qwen3"].remote_urls == ["http://gpu-1:8000", "http://gpu-2:8000"]
    assert cfg.routes[0].fusion == "auto"
    assert model_calibration(cfg.models["qwen3"]) is None  # the engine's scores are probabilities


def test_each_api_is_one_table_entry_and_each_entry_is_tested() -> None:
    from sidecar.config import REMOTE_APIS
    from sidecar.remote_apis import API_TABLE

    # the config accepts exactly the table's APIs, and the end-to-end tests above cover every one
    assert tuple(a.name for a in API_TABLE) == REMOTE_APIS
    assert set(REMOTE_APIS) == set(APIS)
    assert {a.name: a.path for a in API_TABLE} == PATHS


def test_a_remote_model_needs_no_local_batcher() -> None:
    import subprocess
    import sys

    code = "import sys, sidecar.engine.remote; print('sidecar.engine.batcher' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
