"""The LLM rewriter against a local OpenAI-compatible chat endpoint: variants, timeout, errors, cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from osmem_server import OsmemServer

from sidecar.config.rewrite import LlmRewriteConfig, RewriteConfig
from sidecar.rewrite.llm import LlmRewriter, parse_variants, rewrite_with_llm
from sidecar.rewrite.rules import Rewriter
from tests.conftest import RunningSidecar, sidecar_config


@dataclass
class ChatServer:
    """Answers /v1/chat/completions with ``reply``; records each request."""

    url: str = ""
    reply: str = '["Kubernetes pod restart", "restart a Kubernetes pod"]'
    status: int = 200
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def chat() -> AsyncIterator[ChatServer]:
    state = ChatServer()

    async def completions(request: web.Request) -> web.Response:
        state.requests.append({"headers": dict(request.headers), "body": await request.json()})
        await asyncio.sleep(state.delay_s)
        if state.status != 200:
            return web.json_response({"error": {"message": "boom"}}, status=state.status)
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": state.reply}}],
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


def setup(chat: ChatServer, **llm: Any) -> tuple[Rewriter, LlmRewriter]:
    cfg = RewriteConfig(
        abbreviations={"k8s": "Kubernetes"},
        synonyms=[["restart", "reboot"]],
        llm=LlmRewriteConfig(url=chat.url, model="qwen3-1.7b", **llm),
    )
    assert cfg.llm is not None
    return Rewriter(cfg), LlmRewriter(cfg.llm)


async def test_llm_variants_come_first_then_the_rules(
    chat: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWRITE_KEY", "sk-secret-1")
    rewriter, llm = setup(
        chat, api_key_env="REWRITE_KEY", extra_body={"chat_template_kwargs": {"enable_thinking": False}}
    )
    rw = await rewrite_with_llm(rewriter, llm, "k8s pod restart", "GKE")
    assert [(v.text, v.rules) for v in rw.variants] == [
        ("Kubernetes pod restart", ("llm",)),
        ("restart a Kubernetes pod", ("llm",)),
        ("Kubernetes pod reboot", ("abbreviation:k8s", "synonym:restart=>reboot")),
    ]
    (sent,) = chat.requests
    assert sent["headers"]["Authorization"] == "Bearer sk-secret-1"
    body = sent["body"]
    assert body["model"] == "qwen3-1.7b" and body["messages"][1] == {
        "role": "user",
        "content": "k8s pod restart",
    }
    assert "up to 3" in body["messages"][0]["content"] and "GKE" in body["messages"][0]["content"]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    # the same query again comes from the cache
    assert await rewrite_with_llm(rewriter, llm, "k8s pod restart", "GKE") == rw
    assert len(chat.requests) == 1
    await llm.aclose()


async def test_a_slow_endpoint_falls_back_to_the_rules_within_the_timeout(chat: ChatServer) -> None:
    chat.delay_s = 2.0
    rewriter, llm = setup(chat, timeout_ms=150)
    started = asyncio.get_running_loop().time()
    rw = await rewrite_with_llm(rewriter, llm, "k8s pod restart", None)
    assert asyncio.get_running_loop().time() - started < 1.5
    assert rw.notes == ("llm:timeout",)
    assert [v.rules[0] for v in rw.variants] == ["abbreviation:k8s", "abbreviation:k8s"]
    assert "llm:timeout" in rw.rules
    await llm.aclose()


@pytest.mark.parametrize(("status", "reply"), [(500, ""), (200, ""), (200, "<think>hmm</think>")])
async def test_a_failing_endpoint_falls_back_to_the_rules(chat: ChatServer, status: int, reply: str) -> None:
    chat.status, chat.reply = status, reply
    rewriter, llm = setup(chat)
    rw = await rewrite_with_llm(rewriter, llm, "k8s pod restart", None)
    assert rw.notes == ("llm:error",)
    assert [v.text for v in rw.variants] == ["Kubernetes pod restart", "Kubernetes pod reboot"]
    await llm.aclose()


async def test_an_unreachable_endpoint_falls_back_to_the_rules() -> None:
    cfg = LlmRewriteConfig(url="http://127.0.0.1:9", model="m", timeout_ms=500)
    rw = await rewrite_with_llm(
        Rewriter(RewriteConfig(abbreviations={"k8s": "Kubernetes"})), LlmRewriter(cfg), "k8s", None
    )
    assert rw.notes == ("llm:error",) and [v.text for v in rw.variants] == ["Kubernetes"]


def test_replies_are_parsed_as_a_json_array_or_lines() -> None:
    assert parse_variants('<think>\nlet me see [1]\n</think>\n["a b", "c"]') == ["a b", "c"]
    assert parse_variants('Here you go:\n```json\n["x", 3, null, ""]\n```') == ["x", "3"]
    assert parse_variants("1. first one\n2) second\n- third\n\n") == ["first one", "second", "third"]
    assert parse_variants(json.dumps(["显存不足 怎么办"], ensure_ascii=False)) == ["显存不足 怎么办"]


async def test_a_route_with_an_llm_rewriter_through_the_proxy(chat: ChatServer, osmem: OsmemServer) -> None:
    chat.reply = '["Kubernetes pod OOMKilled"]'
    rewrite = {"abbreviations": {"k8s": "Kubernetes"}, "llm": {"url": chat.url, "model": "m"}}
    route = {
        "indices": ["kb"],
        "model": "minilm",
        "window": 12,
        "fields": ["title", "text"],
        "rewrite": rewrite,
    }
    running = await asyncio.to_thread(RunningSidecar, sidecar_config(osmem.url, routes=[route]))
    try:
        body = {"query": {"match": {"title": "k8s pod"}}}
        async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
            r = await client.post("/kb/_search", json=body, headers={"X-Rerank-Explain": "1"})
            assert r.json()["_rerank"]["variants"] == [
                {"text": "Kubernetes pod OOMKilled", "rules": ["llm"]},
                {"text": "Kubernetes pod", "rules": ["abbreviation:k8s"]},
            ]
            assert r.json()["hits"]["hits"][0]["_source"]["title"] == "Kubernetes pod OOMKilled"
            assert len(chat.requests) == 1
            # a config change that keeps the LLM settings keeps its client and its cache
            admin = f"{running.admin_url}/_sidecar/config"
            cfg = (await client.get(admin)).json()
            cfg["routes"][0]["window"] = 10
            assert (await client.put(admin, json=cfg)).status_code == 200
            await client.post("/kb/_search", json=body)
            assert len(chat.requests) == 1
    finally:
        await asyncio.to_thread(running.close)
