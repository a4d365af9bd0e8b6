"""Everything that is not a reranked search looks exactly as if it went straight to the cluster."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from opensearchpy import NotFoundError, OpenSearch, RequestError

from tests.conftest import RunningSidecar


def _same(direct: httpx.Response, proxied: httpx.Response, *, rename: tuple[str, str] | None = None) -> None:
    assert proxied.status_code == direct.status_code
    assert proxied.headers.get("content-type") == direct.headers.get("content-type")
    a, b = direct.content, proxied.content
    if rename:
        b = b.replace(rename[1].encode(), rename[0].encode())
    assert _normalized(b) == _normalized(a)


def _normalized(body: bytes) -> bytes:
    """Without what differs between any two calls: took, and index uuids in messages."""
    body = re.sub(rb'"took":\d+', b'"took":0', body)
    return re.sub(rb"(?<=/)[\w-]{16,}(?=\])", b"UUID", body)


READ_ONLY = [
    ("GET", "/kb/_doc/3", None),
    ("GET", "/kb/_count", None),
    ("POST", "/kb/_count", {"query": {"match": {"text": "memory"}}}),
    ("GET", "/kb/_mapping", None),
    ("GET", "/_cat/indices/kb?h=index,docs.count", None),
    ("GET", "/_cluster/health/kb", None),
    ("GET", "/", None),
    ("GET", "/kb/_doc/does-not-exist", None),  # a 404 document
    ("GET", "/no-such-index/_search", None),  # a 404 index
    ("POST", "/kb/_count", "{not json"),  # a 400
    ("POST", "/plain/_search", {"query": {"match": {"text": "lora rank"}}}),  # unrouted: bypassed
    ("POST", "/kb/_search", {"query": {"match": {"text": "lora"}}, "sort": [{"_id": "asc"}]}),  # bypassed
]


@pytest.mark.parametrize(("method", "path", "body"), READ_ONLY, ids=[f"{m} {p}" for m, p, _ in READ_ONLY])
def test_read_only_requests_are_identical(
    direct: httpx.Client, proxied: httpx.Client, method: str, path: str, body: object
) -> None:
    kwargs: dict[str, object] = {}
    if isinstance(body, str):
        kwargs = {"content": body, "headers": {"content-type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    _same(direct.request(method, path, **kwargs), proxied.request(method, path, **kwargs))


def _lifecycle(c: httpx.Client, index: str) -> list[httpx.Response]:
    out = [c.put(f"/{index}", json={"mappings": {"properties": {"title": {"type": "text"}}}})]
    out.append(c.put(f"/{index}/_doc/a?refresh=true", json={"title": "first"}))
    out.append(c.get(f"/{index}/_doc/a"))
    bulk = "".join(
        json.dumps({"index": {"_index": index, "_id": str(i)}})
        + "\n"
        + json.dumps({"title": f"doc {i}"})
        + "\n"
        for i in range(5)
    )
    out.append(c.post("/_bulk?refresh=true", content=bulk, headers={"content-type": "application/x-ndjson"}))
    out.append(c.get(f"/{index}/_count"))
    out.append(c.delete(f"/{index}/_doc/a?refresh=true"))
    out.append(c.get(f"/{index}/_doc/a"))
    out.append(c.put(f"/{index}", json={}))  # already exists: a 400
    out.append(c.delete(f"/{index}"))
    out.append(c.delete(f"/{index}"))  # gone: a 404
    return out


def test_write_lifecycle_is_identical(direct: httpx.Client, proxied: httpx.Client) -> None:
    for d, p in zip(_lifecycle(direct, "fid-direct"), _lifecycle(proxied, "fid-proxy"), strict=True):
        _same(d, p, rename=("fid-direct", "fid-proxy"))


def test_opensearch_py_sees_a_cluster(sidecar: RunningSidecar, osmem: object) -> None:
    client = OpenSearch(hosts=[sidecar.url], http_compress=True)
    assert client.info()["version"]["distribution"] == "opensearch"
    assert client.count(index="kb")["count"] == 16
    client.index(index="py-client", id="1", body={"title": "hello"}, refresh=True)
    assert client.get(index="py-client", id="1")["_source"] == {"title": "hello"}
    with pytest.raises(NotFoundError):
        client.get(index="py-client", id="missing")
    with pytest.raises(RequestError):
        client.search(index="kb", body={"query": {"no_such_query": {}}})
    client.indices.delete(index="py-client")


def test_unreachable_upstream_is_an_opensearch_502(tmp_path: object) -> None:
    from tests.conftest import sidecar_config

    running = RunningSidecar(sidecar_config("http://127.0.0.1:9", routes=[], models={}))
    try:
        r = httpx.get(running.url + "/kb/_doc/1")
        assert r.status_code == 502
        assert r.json()["error"]["type"] == "upstream_unavailable_exception"
        assert r.json()["status"] == 502
    finally:
        running.close()
