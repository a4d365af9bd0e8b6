"""Each bypass rule forwards the search unchanged; model trouble falls back to the cluster's order."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import RunningSidecar

MATCH = {"query": {"match": {"text": "lora rank"}}}

BYPASS = [
    ("no-route", "/plain/_search", {}, MATCH, {}),
    ("size-0", "/kb/_search", {}, {**MATCH, "size": 0}, {}),
    ("sort", "/kb/_search", {}, {**MATCH, "sort": [{"_id": "desc"}]}, {}),
    ("sort", "/kb/_search", {"sort": "_id:asc"}, MATCH, {}),
    ("scroll", "/kb/_search", {"scroll": "1m"}, MATCH, {}),
    ("search_after", "/kb/_search", {}, {**MATCH, "sort": ["_score"], "search_after": [1.0]}, {}),
    ("pit", "/kb/_search", {}, {**MATCH, "pit": {"id": "abc", "keep_alive": "1m"}}, {}),
    (
        "rescore",
        "/kb/_search",
        {},
        {**MATCH, "rescore": {"window_size": 5, "query": {"rescore_query": {"match_all": {}}}}},
        {},
    ),
    ("disabled-by-header", "/kb/_search", {}, MATCH, {"X-Rerank": "off"}),
    ("no-query-text", "/kb/_search", {}, {"query": {"match_all": {}}}, {}),
    ("knn-no-text", "/kb/_search", {}, {"knn": {"field": "v", "query_vector": [0.1, 0.2], "k": 3}}, {}),
]


@pytest.mark.parametrize(
    ("reason", "path", "params", "body", "headers"), BYPASS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BYPASS)]
)
def test_bypass_rules(
    direct: httpx.Client,
    proxied: httpx.Client,
    reason: str,
    path: str,
    params: dict[str, str],
    body: dict[str, object],
    headers: dict[str, str],
) -> None:
    p = proxied.post(path, params=params, json=body, headers=headers)
    d = direct.post(path, params=params, json=body, headers=headers)
    assert p.headers["x-rerank"] == "bypass"
    assert p.headers["x-rerank-reason"] == reason
    assert p.status_code == d.status_code
    assert _normalized(p.content) == _normalized(d.content)


def _normalized(body: bytes) -> bytes:
    """Without the fields that differ between any two calls: took and scroll ids."""
    return re.sub(rb'"_scroll_id":"[^"]*"', b"", re.sub(rb'"took":\d+', b"", body))


def test_the_cluster_default_search_is_bypassed_without_a_route(proxied: httpx.Client) -> None:
    r = proxied.get("/_search")
    assert r.headers["x-rerank"] == "bypass"
    assert r.headers["x-rerank-reason"] == "no-route"


@pytest.mark.parametrize(("index", "reason"), [("slow", "timeout"), ("broken", "model-error")])
def test_fallback_keeps_the_clusters_page(
    direct: httpx.Client, proxied: httpx.Client, index: str, reason: str
) -> None:
    body = {**MATCH, "from": 1, "size": 3, "_source": ["title"]}
    p = proxied.post(f"/{index}/_search", json=body)
    d = direct.post(f"/{index}/_search", json=body)
    assert p.status_code == 200
    assert p.headers["x-rerank"] == "fallback"
    assert p.headers["x-rerank-reason"] == reason
    assert [h["_id"] for h in p.json()["hits"]["hits"]] == [h["_id"] for h in d.json()["hits"]["hits"]]
    assert p.json()["hits"]["hits"] == d.json()["hits"]["hits"]
    if reason == "timeout":
        assert float(p.headers["x-rerank-took-ms"]) < 1000  # the route budget is 200 ms


def test_cluster_errors_on_the_widened_search_are_passed_through(
    direct: httpx.Client, proxied: httpx.Client
) -> None:
    body = {"query": {"bool": {"must": [{"match": {"text": "lora"}}, {"no_such_query": {}}]}}}
    p, d = proxied.post("/kb/_search", json=body), direct.post("/kb/_search", json=body)
    assert p.status_code == d.status_code == 400
    assert p.json()["error"]["type"] == d.json()["error"]["type"]


@pytest.mark.parametrize(
    ("body", "params", "headers"),
    [
        ({**MATCH, "sort": [{"_id": "desc"}]}, {}, {}),
        ({**MATCH, "size": 0}, {}, {}),
        (MATCH, {"scroll": "1m"}, {}),
        (MATCH, {}, {"X-Rerank": "off"}),
    ],
)
def test_a_bypassed_search_keeps_its_query_in_its_event(
    sidecar: RunningSidecar,
    proxied: httpx.Client,
    body: dict[str, object],
    params: dict[str, str],
    headers: dict[str, str],
) -> None:
    """What the TUI shows of a search passed through, and what its filter finds it by."""
    p = proxied.post("/kb/_search", params=params, json=body, headers=headers)
    assert p.headers["x-rerank"] == "bypass"
    recent = httpx.get(f"{sidecar.admin_url}/_sidecar/events", params={"limit": 1}).json()["events"]
    assert recent[0]["status"] == "bypass" and recent[0]["query"] == "lora rank"
