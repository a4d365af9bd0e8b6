"""A search in a language the route's model does not read: the cluster's order (reason
``language``), the route's model for that language, or the rules that turn it into one the
model reads; through a real sidecar with the real all-MiniLM-L6-v2 (English) in front of osmem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from osmem_server import OsmemServer

from tests.conftest import RunningSidecar, index_corpus, sidecar_config

CHINESE = [
    {"title": "重启容器", "text": "删除容器或者滚动重启部署，就能用新的容器重启服务。"},
    {"title": "显存不足", "text": "批大小调小、梯度检查点或混合精度可以解决显存不足的问题。"},
    {"title": "退货政策", "text": "收到商品三十天内可以退货，货款原路退回。"},
    {"title": "免运费", "text": "订单满五十元免运费，不满的订单收取固定运费。"},
    {
        "title": "Java 基本类型",
        "text": "Java 有八种基本类型：byte、short、int、long、float、double、char 和 boolean。",
    },
    {"title": "错误代码 13", "text": "错误代码 13 表示没有权限：服务账号无法读取模型目录。"},
    {"title": "LoRA 的秩", "text": "大多数微调任务里 LoRA 的秩取 8 或 16 就够了。"},
    {
        "title": "Restart a pod",
        "text": "Delete the pod or run a rollout restart of its deployment to restart it.",
    },
    {"title": "Release 2024", "text": "The 2024 release notes list every change to the service."},
]
ROUTE: dict[str, Any] = {
    "window": 8,
    "fields": ["title", "text"],
    "template": "{title}\n{text}",
    "fusion": "replace",
}
QUERY = "怎么重启容器"


@pytest.fixture(scope="module")
def polyglot(osmem: OsmemServer) -> Iterator[RunningSidecar]:
    for index in ("zh-plain", "zh-multi", "zh-rules", "zh-any"):
        index_corpus(osmem.url, index, CHINESE)
    models = {
        "minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"},
        # the same weights said to read every language: the stand-in for a multilingual model
        "multi": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu", "languages": "any"},
    }
    rules = {"by_language": {"zh": {"synonyms": ["怎么重启容器 => how to restart a container"]}}}
    config = sidecar_config(
        osmem.url,
        models=models,
        routes=[
            {**ROUTE, "indices": ["zh-plain"], "model": "minilm"},
            {**ROUTE, "indices": ["zh-multi"], "model": "minilm", "models_by_language": {"zh": "multi"}},
            {**ROUTE, "indices": ["zh-rules"], "model": "minilm", "rewrite": rules},
            {**ROUTE, "indices": ["zh-any"], "model": "multi"},
        ],
    )
    running = RunningSidecar(config)
    yield running
    running.close()


def _search(url: str, index: str, text: str, size: int = 5) -> httpx.Response:
    body = {"query": {"multi_match": {"query": text, "fields": ["title", "text"]}}, "size": size}
    return httpx.post(f"{url}/{index}/_search", json=body, timeout=60)


def _event(running: RunningSidecar, predicate: Any) -> dict[str, Any]:
    events = httpx.get(f"{running.admin_url}/_sidecar/events", params={"limit": "50"}).json()["events"]
    return next(e for e in events if predicate(e))


def test_a_chinese_query_goes_to_the_cluster_unchanged(polyglot: RunningSidecar, osmem: OsmemServer) -> None:
    r = _search(polyglot.url, "zh-plain", QUERY)
    assert r.status_code == 200
    assert r.headers["x-rerank"] == "bypass" and r.headers["x-rerank-reason"] == "language"
    direct = _search(osmem.url, "zh-plain", QUERY)
    assert r.json()["hits"] == direct.json()["hits"]  # exactly the cluster's answer
    event = _event(polyglot, lambda e: e["index"] == "zh-plain" and e["query"] == QUERY)
    assert event["status"] == "bypass" and event["reason"] == "language" and event["language"] == "zh"


def test_an_english_query_on_the_same_route_is_reranked(polyglot: RunningSidecar) -> None:
    r = _search(polyglot.url, "zh-plain", "restart a pod")
    assert r.headers["x-rerank"] == "applied" and r.headers["x-rerank-model"] == "minilm"


def test_the_routes_model_for_the_language_reranks_it(polyglot: RunningSidecar) -> None:
    r = _search(polyglot.url, "zh-multi", QUERY)
    assert r.headers["x-rerank"] == "applied" and r.headers["x-rerank-model"] == "multi"
    event = _event(polyglot, lambda e: e["index"] == "zh-multi" and e["query"] == QUERY)
    assert event["model"] == "multi" and event["language"] == "zh"
    docs = [f"{d['title']}\n{d['text']}" for d in (h["_source"] for h in r.json()["hits"]["hits"])]
    scores = [h["_score"] for h in r.json()["hits"]["hits"]]
    assert scores == pytest.approx(polyglot.scores("multi", QUERY, docs), abs=1e-5)


def test_a_rule_of_the_language_that_makes_english_lets_the_model_rerank(polyglot: RunningSidecar) -> None:
    r = httpx.post(
        f"{polyglot.url}/zh-rules/_search",
        json={"query": {"multi_match": {"query": QUERY, "fields": ["title", "text"]}}, "size": 3},
        headers={"x-rerank-explain": "1"},
        timeout=60,
    )
    assert r.headers["x-rerank"] == "applied", r.headers
    variants = [v["text"] for v in r.json()["_rerank"]["variants"]]
    assert "how to restart a container" in variants
    # the rule is Chinese queries' own: a mostly English query with the same words gets no variant
    mixed = "please tell me how I restart the pod 怎么重启容器"
    r = httpx.post(
        f"{polyglot.url}/zh-rules/_search",
        json={"query": {"match": {"text": mixed}}, "size": 3},
        headers={"x-rerank-explain": "1"},
        timeout=60,
    )
    assert r.headers["x-rerank"] == "applied"
    assert "how to restart a container" not in " ".join(v["text"] for v in r.json()["_rerank"]["variants"])


def test_a_model_that_reads_every_language_is_never_asked(polyglot: RunningSidecar) -> None:
    r = _search(polyglot.url, "zh-any", QUERY)
    assert r.headers["x-rerank"] == "applied"
    event = _event(polyglot, lambda e: e["index"] == "zh-any" and e["query"] == QUERY)
    assert event["language"] is None  # nothing detected where nothing depends on it


def test_a_query_with_no_letters_is_told_by_its_window(polyglot: RunningSidecar, osmem: OsmemServer) -> None:
    r = _search(polyglot.url, "zh-plain", "13", size=3)
    assert r.headers["x-rerank"] == "fallback" and r.headers["x-rerank-reason"] == "language"
    direct = _search(osmem.url, "zh-plain", "13", size=3)
    assert [h["_id"] for h in r.json()["hits"]["hits"]] == [h["_id"] for h in direct.json()["hits"]["hits"]]
    event = _event(polyglot, lambda e: e["index"] == "zh-plain" and e["query"] == "13")
    assert event["status"] == "fallback" and event["language"] == "zh"
    # digits over a window in English are reranked
    r = _search(polyglot.url, "zh-plain", "2024", size=3)
    assert r.headers["x-rerank"] == "applied"


def test_msearch_sends_each_sub_search_where_its_language_says(polyglot: RunningSidecar) -> None:
    lines = [
        {"index": "zh-plain"},
        {"query": {"match": {"text": QUERY}}, "size": 3},
        {"index": "zh-plain"},
        {"query": {"match": {"text": "restart a pod"}}, "size": 3},
    ]
    body = "".join(json.dumps(x) + "\n" for x in lines)
    r = httpx.post(
        f"{polyglot.url}/_msearch",
        content=body,
        headers={"content-type": "application/x-ndjson"},
        timeout=60,
    )
    assert r.status_code == 200
    assert r.headers["x-rerank-msearch"] == "bypass:language,applied"
    assert all(resp["status"] == 200 for resp in r.json()["responses"])


def test_metrics_count_the_language_reason(polyglot: RunningSidecar) -> None:
    _search(polyglot.url, "zh-plain", QUERY)
    text = httpx.get(f"{polyglot.admin_url}/_sidecar/metrics").text
    line = next(x for x in text.splitlines() if 'reason="language",status="bypass"' in x)
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_a_bypass_leaves_out_ext_rerank_which_the_cluster_would_refuse(polyglot: RunningSidecar) -> None:
    body = {
        "query": {"bool": {"filter": [{"match_all": {}}]}},
        "ext": {"rerank": {"query_context": {"query_text": QUERY}}},
        "size": 3,
    }
    r = httpx.post(f"{polyglot.url}/zh-plain/_search", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["x-rerank"] == "bypass" and r.headers["x-rerank-reason"] == "language"
    assert len(r.json()["hits"]["hits"]) == 3
    lines = [{"index": "zh-plain"}, body]
    r = httpx.post(
        f"{polyglot.url}/_msearch",
        content="".join(json.dumps(x) + "\n" for x in lines),
        headers={"content-type": "application/x-ndjson"},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["responses"][0]["status"] == 200, r.text


@pytest.mark.parametrize(
    ("extra", "headers", "reason"),
    [({"sort": [{"_doc": "asc"}]}, {}, "sort"), ({}, {"X-Rerank": "off"}, "disabled-by-header")],
)
def test_every_bypass_of_a_routed_search_leaves_out_ext_rerank(
    polyglot: RunningSidecar, extra: dict[str, Any], headers: dict[str, str], reason: str
) -> None:
    body = {
        "query": {"match": {"text": "restart"}},
        "ext": {"rerank": {"query_context": {"query_text": "x"}}},
    }
    r = httpx.post(f"{polyglot.url}/zh-plain/_search", json={**body, **extra}, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["x-rerank"] == "bypass" and r.headers["x-rerank-reason"] == reason
    lines = [{"index": "zh-plain"}, {**body, **extra}]
    r = httpx.post(
        f"{polyglot.url}/_msearch",
        content="".join(json.dumps(x) + "\n" for x in lines),
        headers={"content-type": "application/x-ndjson", **headers},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["responses"][0]["status"] == 200, r.text
