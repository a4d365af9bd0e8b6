"""A widened request the cluster refuses is asked again as the client sent it: never an error of
the sidecar's making. Here an index's ``max_result_window`` (8) is under the route's window (12)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from osmem_server import OsmemServer

from tests.conftest import CORPUS, index_corpus
from tests.proxy.test_rerank import QUERY

INDEX = "docs-small"  # routed by docs-*, window 12


@pytest.fixture(scope="module")
def small(osmem: OsmemServer) -> Iterator[str]:
    index_corpus(osmem.url, INDEX, CORPUS)
    with httpx.Client(base_url=osmem.url) as c:
        r = c.put(f"/{INDEX}/_settings", json={"index": {"max_result_window": 8}})
        assert r.status_code == 200, r.text
    yield INDEX
    httpx.delete(f"{osmem.url}/{INDEX}")


def test_a_refused_widening_is_answered_as_the_client_asked(
    small: str, direct: httpx.Client, proxied: httpx.Client
) -> None:
    body = {**QUERY, "size": 5}
    p = proxied.post(f"/{small}/_search", json=body)
    d = direct.post(f"/{small}/_search", json=body)
    assert d.status_code == 200 and p.status_code == 200
    assert p.headers["x-rerank"] == "fallback" and p.headers["x-rerank-reason"] == "widen-refused"
    assert [h["_id"] for h in p.json()["hits"]["hits"]] == [h["_id"] for h in d.json()["hits"]["hits"]]
    assert p.json()["hits"]["hits"] == d.json()["hits"]["hits"]  # no widened _source, no _rerank


def test_the_clients_own_error_is_the_clusters_own_answer(
    small: str, direct: httpx.Client, proxied: httpx.Client
) -> None:
    body = {**QUERY, "query": {"match": {"text": {"query": "x", "operator": "sideways"}}}}
    p = proxied.post(f"/{small}/_search", json=body)
    d = direct.post(f"/{small}/_search", json=body)
    assert p.status_code == d.status_code == 400 and p.json() == d.json()
    assert p.headers["x-rerank"] == "bypass" and p.headers["x-rerank-reason"] == "upstream-status-400"


def test_msearch_asks_again_only_for_the_refused_sub_searches(
    small: str, direct: httpx.Client, proxied: httpx.Client
) -> None:
    lines = [{"index": small}, {**QUERY, "size": 3}, {"index": "kb"}, {**QUERY, "size": 3}]
    body = "".join(json.dumps(x) + "\n" for x in lines)
    headers = {"content-type": "application/x-ndjson"}
    p = proxied.post("/_msearch", content=body, headers=headers)
    d = direct.post("/_msearch", content=body, headers=headers)
    assert p.status_code == 200
    assert p.headers["x-rerank-msearch"] == "fallback:widen-refused,applied"
    first, second = p.json()["responses"]
    assert first["hits"]["hits"] == d.json()["responses"][0]["hits"]["hits"]
    assert "_rerank" in second["hits"]["hits"][0]
