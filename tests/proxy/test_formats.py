"""Answers that are not plain JSON, vendored JSON media types and the URL's output parameters."""

from __future__ import annotations

import httpx
import pytest

from tests.proxy.test_rerank import QUERY

VND = "application/vnd.elasticsearch+json; compatible-with=8"


@pytest.mark.parametrize(
    ("params", "accept"),
    [
        ({"format": "yaml"}, None),
        ({"format": "cbor"}, None),
        ({}, "application/yaml"),
        ({}, "application/smile"),
        ({}, "application/cbor, text/plain"),
    ],
)
def test_a_non_json_answer_is_the_clusters_own(
    direct: httpx.Client, proxied: httpx.Client, params: dict[str, str], accept: str | None
) -> None:
    headers = {"accept": accept} if accept else {}
    p = proxied.post("/kb/_search", json={**QUERY, "size": 3}, params=params, headers=headers)
    d = direct.post("/kb/_search", json={**QUERY, "size": 3}, params=params, headers=headers)
    assert p.headers["x-rerank"] == "bypass" and p.headers["x-rerank-reason"] == "format"
    assert p.status_code == d.status_code and p.content == d.content
    m = proxied.post(
        "/kb/_msearch", content='{}\n{"query": {"match_all": {}}}\n', params=params, headers=headers
    )
    assert m.headers["x-rerank"] == "bypass" and m.headers["x-rerank-reason"] == "format"


@pytest.mark.parametrize("accept", ["application/json", "*/*", "application/json;q=0.9, text/plain"])
def test_json_accepts_are_reranked(proxied: httpx.Client, accept: str) -> None:
    r = proxied.post("/kb/_search", json={**QUERY, "size": 3}, headers={"accept": accept})
    assert r.headers["x-rerank"] == "applied"


def test_a_vendored_content_type_reaches_the_cluster_as_the_client_sent_it(
    direct: httpx.Client, proxied: httpx.Client
) -> None:
    """OpenSearch (and osmem) refuse Elasticsearch's vendored types with 406; Elasticsearch 9
    needs them on both headers for an 8.x client. Either way the cluster must see them."""
    headers = {"content-type": VND, "accept": VND}
    p = proxied.post("/kb/_search", json={**QUERY, "size": 3}, headers=headers)
    d = direct.post("/kb/_search", json={**QUERY, "size": 3}, headers=headers)
    assert p.status_code == d.status_code and p.json() == d.json()


def test_output_parameters_are_answered_as_the_cluster_would(
    direct: httpx.Client, proxied: httpx.Client
) -> None:
    params = {"rest_total_hits_as_int": "true", "typed_keys": "true", "human": "true", "error_trace": "true"}
    body = {**QUERY, "size": 3, "aggs": {"tags": {"terms": {"field": "tag"}}}}
    p = proxied.post("/kb/_search", json=body, params=params)
    d = direct.post("/kb/_search", json=body, params=params)
    assert p.headers["x-rerank"] == "applied"
    assert p.json()["hits"]["total"] == d.json()["hits"]["total"] and isinstance(
        p.json()["hits"]["total"], int
    )
    assert p.json()["aggregations"] == d.json()["aggregations"]
    pretty = proxied.post("/kb/_search", json=body, params={"pretty": "true"})
    assert pretty.text.startswith("{\n") and pretty.headers["x-rerank"] == "applied"
