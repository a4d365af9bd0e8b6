"""The fidelity cases against a real OpenSearch 2.x/3.x or Elasticsearch 8.x, when one is given:

    REAL_CLUSTER_URL=https://127.0.0.1:9201 REAL_CLUSTER_AUTH=admin:PASSWORD REAL_CLUSTER_VERIFY=0 \\
        pytest tests/test_real_cluster.py

(README, "Testing against a real cluster"). Skipped without REAL_CLUSTER_URL. Each case compares
the sidecar's answer with the cluster's own, so it holds for any version; the indices it makes
are named rerank-sidecar-test-* and deleted afterwards."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CORPUS, RunningSidecar, sidecar_config

URL = os.environ.get("REAL_CLUSTER_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="REAL_CLUSTER_URL is not set")
AUTH = (
    tuple(os.environ.get("REAL_CLUSTER_AUTH", ":").split(":", 1))
    if os.environ.get("REAL_CLUSTER_AUTH")
    else None
)
VERIFY = os.environ.get("REAL_CLUSTER_VERIFY", "1") not in ("0", "false", "no")
KB, SMALL = "rerank-sidecar-test-docs-kb", "rerank-sidecar-test-docs-small"
MAPPING = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}, "tag": {"type": "keyword"}}}
QUERY = {"query": {"match": {"text": "memory rank pod gpu"}}}


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, auth=AUTH, verify=VERIFY, timeout=60)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster() -> Iterator[httpx.Client]:
    with _client(URL) as c:
        docs = [*CORPUS, *({"title": f"note {i}", "text": f"memory note {i} gpu"} for i in range(40))]
        docs += [{"tag": "gpu"}] * 2  # no text in the route's fields
        for index, settings in ((KB, {}), (SMALL, {"index": {"max_result_window": 8}})):
            c.delete(f"/{index}")
            c.put(f"/{index}", json={"settings": settings, "mappings": MAPPING}).raise_for_status()
            lines = [x for i, d in enumerate(docs) for x in ({"index": {"_index": index, "_id": str(i)}}, d)]
            body = "".join(json.dumps(x) + "\n" for x in lines)
            c.post("/_bulk?refresh=true", content=body, headers={"content-type": "application/x-ndjson"})
        yield c
        for index in (KB, SMALL):
            c.delete(f"/{index}")


@pytest.fixture(scope="module")
def proxied(cluster: httpx.Client) -> Iterator[httpx.Client]:
    base = sidecar_config(URL)
    route = base.routes[0].model_copy(update={"indices": ["rerank-sidecar-test-docs-*"]})
    upstream = base.upstream.model_copy(update={"verify": VERIFY})
    running = RunningSidecar(base.model_copy(update={"upstream": upstream, "routes": [route]}))
    try:
        with _client(running.url) as c:
            yield c
    finally:
        running.close()


def _same(a: httpx.Response, b: httpx.Response) -> bool:
    strip = lambda r: re.sub(rb'"took" ?: ?\d+', b"", r.content)  # noqa: E731
    return a.status_code == b.status_code and strip(a) == strip(b)


def test_msearch_with_blank_headers(cluster: httpx.Client, proxied: httpx.Client) -> None:
    body = f"\r\n{json.dumps(QUERY)}\n\n{json.dumps(QUERY)}\n"
    headers = {"content-type": "application/x-ndjson"}
    d, p = (
        cluster.post(f"/{KB}/_msearch", content=body, headers=headers),
        proxied.post(f"/{KB}/_msearch", content=body, headers=headers),
    )
    assert (
        d.status_code == p.status_code == 200
        and len(p.json()["responses"]) == len(d.json()["responses"]) == 2
    )
    assert p.headers["x-rerank-msearch"] == "applied,applied"


def test_pages_walk_the_window_then_the_clusters_order(cluster: httpx.Client, proxied: httpx.Client) -> None:
    order = [
        h["_id"] for h in cluster.post(f"/{KB}/_search", json={**QUERY, "size": 100}).json()["hits"]["hits"]
    ]
    walked = [
        h["_id"]
        for s in range(0, len(order) + 7, 7)
        for h in proxied.post(f"/{KB}/_search", json={**QUERY, "from": s, "size": 7}).json()["hits"]["hits"]
    ]
    assert len(walked) == len(set(walked)) == len(order) and walked[12:] == order[12:]


def test_a_refused_widening_falls_back(cluster: httpx.Client, proxied: httpx.Client) -> None:
    d, p = (
        cluster.post(f"/{SMALL}/_search", json={**QUERY, "size": 5}),
        proxied.post(f"/{SMALL}/_search", json={**QUERY, "size": 5}),
    )
    assert p.headers["x-rerank-reason"] == "widen-refused" and _same(d, p)


@pytest.mark.parametrize(
    "params", [{"format": "yaml"}, {"rest_total_hits_as_int": "true", "typed_keys": "true"}]
)
def test_formats_and_output_parameters(
    cluster: httpx.Client, proxied: httpx.Client, params: dict[str, str]
) -> None:
    d, p = (
        cluster.post(f"/{KB}/_search", json={**QUERY, "size": 3}, params=params),
        proxied.post(f"/{KB}/_search", json={**QUERY, "size": 3}, params=params),
    )
    if "format" in params:
        assert p.headers["x-rerank-reason"] == "format" and _same(d, p)
    else:
        assert p.headers["x-rerank"] == "applied" and p.json()["hits"]["total"] == d.json()["hits"]["total"]


def test_query_text_and_missing_text(proxied: httpx.Client) -> None:
    must = [{"match": {"tag": "none"}}, {"match": {"text": "gpu memory"}}]
    body = {"query": {"bool": {"should": must}}}
    r = proxied.post(f"/{KB}/_search", json={**body, "size": 60}, headers={"X-Rerank-Explain": "1"})
    assert r.headers["x-rerank"] == "applied" and r.json()["_rerank"]["query"] == "gpu memory"
    tagged = {
        "query": {"bool": {"should": [{"match": {"text": "gpu"}}, {"term": {"tag": "gpu"}}]}},
        "size": 100,
    }
    flags = proxied.post(f"/{KB}/_search", json=tagged).headers.get("x-rerank-flags", "")
    assert "missing-text" in flags.split(",")


def test_the_official_client_through_the_sidecar(proxied: httpx.Client) -> None:
    from opensearchpy import OpenSearch

    client = OpenSearch(
        hosts=[str(proxied.base_url)], http_auth=AUTH, verify_certs=VERIFY, ssl_show_warn=False
    )
    found = client.search(index=KB, body={**QUERY, "size": 3})
    assert len(found["hits"]["hits"]) == 3 and "_rerank" in found["hits"]["hits"][0]
