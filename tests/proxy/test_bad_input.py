"""A client's mistake gets the cluster's own answer, never a 500 from the sidecar."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

CASES = [
    ("malformed-json", "/kb/_search", b'{"query": {"match": ', "application/json"),
    ("not-json-content-type", "/kb/_search", b"lora rank", "text/plain"),
    (
        "unknown-query",
        "/kb/_search",
        json.dumps({"query": {"no_such_query": {"x": 1}}}).encode(),
        "application/json",
    ),
    ("json-array", "/kb/_search", b"[1, 2]", "application/json"),
    (
        "bad-size",
        "/kb/_search",
        json.dumps({"query": {"match": {"text": "x"}}, "size": "ten"}).encode(),
        "application/json",
    ),
    (
        "bad-source",
        "/kb/_search",
        json.dumps({"query": {"match": {"text": "x"}}, "_source": 12}).encode(),
        "application/json",
    ),
    ("msearch-odd-lines", "/_msearch", b'{"index": "kb"}\n', "application/x-ndjson"),
    ("msearch-bad-json", "/_msearch", b'{"index": "kb"}\n{nope}\n', "application/x-ndjson"),
    ("invalid-utf8", "/kb/_search", b'{"query": {"match": {"text": "\xff\xfe"}}}', "application/json"),
]


@pytest.mark.parametrize(("name", "path", "body", "ctype"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_the_clusters_answer(
    direct: httpx.Client, proxied: httpx.Client, name: str, path: str, body: bytes, ctype: str
) -> None:
    headers = {"content-type": ctype}
    p = proxied.post(path, content=body, headers=headers)
    d = direct.post(path, content=body, headers=headers)
    assert p.status_code != 500 or d.status_code == 500
    assert p.status_code == d.status_code
    assert p.headers.get("content-type") == d.headers.get("content-type")
    if p.status_code >= 400:
        assert p.content == d.content


def test_gzip_request_body_is_reranked(proxied: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"query": {"match": {"text": "lora rank"}}, "size": 2}).encode())
    r = proxied.post(
        "/kb/_search", content=body, headers={"content-type": "application/json", "content-encoding": "gzip"}
    )
    assert r.status_code == 200
    assert r.headers["x-rerank"] == "applied"


def test_gzip_response_is_accepted(proxied: httpx.Client) -> None:
    r = proxied.post(
        "/kb/_search",
        json={"query": {"match": {"text": "lora rank"}}, "size": 2},
        headers={"accept-encoding": "gzip"},
    )
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
    assert len(r.json()["hits"]["hits"]) == 2
