"""Defects 8 and 15: a client's mistake gets the cluster's own answer (the request passed through
unparsed where the sidecar cannot read it) or a 400 in OpenSearch's shape, never a sidecar 5xx;
and an error the cluster gives for the client's page is passed through, not masked as an empty
page."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from osmem_server import OsmemServer

from tests.conftest import RunningSidecar

JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}


def _nested(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {"match": {"text": "gpu memory"}}
    for _ in range(depth):
        inner = {"bool": {"must": [inner]}}
    return {"query": inner}


def _deep_json(depth: int) -> bytes:
    return b'{"query":' * depth + b"{}" + b"}" * depth


def _shapes() -> st.SearchStrategy[tuple[str, bytes, dict[str, str]]]:
    """The shapes the red team found, each at sizes around where it broke."""
    return st.one_of(
        st.integers(50, 400).map(lambda d: ("/kb/_search", json.dumps(_nested(d)).encode(), JSON)),
        st.integers(200, 3000).map(lambda d: ("/kb/_search", _deep_json(d), JSON)),
        st.integers(4000, 6000).map(lambda n: ("/kb/_search", b'{"from": ' + b"9" * n + b"}", JSON)),
        st.integers(4000, 6000).map(
            lambda n: ("/kb/_search", b'{"query":{"match":{"text":"gpu"}},"size":' + b"7" * n + b"}", JSON)
        ),
        st.sampled_from([5, True, None, 1.5, {"a": 1}, [1, 2]]).map(
            lambda v: (
                "/_msearch",
                (json.dumps({"index": v}) + '\n{"query":{"match_all":{}}}\n').encode(),
                NDJSON,
            )
        ),
        st.integers(200, 2000).map(lambda d: ("/kb/_msearch", b"{}\n" + _deep_json(d) + b"\n", NDJSON)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=_shapes())
def test_a_malformed_search_never_gets_a_sidecar_error(
    sidecar: RunningSidecar, osmem: OsmemServer, shape: tuple[str, bytes, dict[str, str]]
) -> None:
    path, body, headers = shape
    r = httpx.post(sidecar.url + path, content=body, headers=headers, timeout=30)
    assert "sidecar_exception" not in r.text, r.text[:300]
    if r.status_code >= 500:
        direct = httpx.post(osmem.url + path, content=body, headers=headers, timeout=30)
        assert direct.status_code == r.status_code, (r.text[:300], direct.text[:300])
    if r.status_code >= 400:
        assert "error" in r.json()


@pytest.mark.parametrize(
    "paging",
    [{"from": 9995}, {"size": 100000}, {"from": 1e9}, {"size": 2**70}, {"from": 9990, "size": 20}],
)
def test_the_clusters_error_for_the_page_is_passed_through(
    sidecar: RunningSidecar, osmem: OsmemServer, paging: dict[str, Any]
) -> None:
    body = {"query": {"match": {"text": "gpu memory"}}, **paging}
    direct = httpx.post(f"{osmem.url}/kb/_search", json=body)
    via = httpx.post(f"{sidecar.url}/kb/_search", json=body)
    assert direct.status_code == 400
    assert via.status_code == direct.status_code, via.text[:300]
    assert via.json()["error"]["type"] == direct.json()["error"]["type"]


def test_an_msearch_page_the_cluster_refuses_is_its_error_item(sidecar: RunningSidecar) -> None:
    lines = (
        '{}\n{"query": {"match": {"text": "gpu"}}, "from": 9995}\n{}\n{"query": {"match": {"text": "gpu"}}}\n'
    )
    r = httpx.post(f"{sidecar.url}/kb/_msearch", content=lines.encode(), headers=NDJSON)
    assert r.status_code == 200
    first, second = r.json()["responses"]
    assert first["status"] == 400 and "error" in first
    assert second["hits"]["hits"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"123456789012345678901234567890"])
def test_a_number_json_cannot_round_trip_reaches_the_cluster_as_the_client_wrote_it(
    sidecar: RunningSidecar, osmem: OsmemServer, literal: bytes
) -> None:
    """The widened body is written by orjson where it writes what the client sent, and by the
    standard library elsewhere: a NaN or a 30-digit number is never turned into null or a float,
    so the sidecar's answer is the cluster's own to the body as sent."""
    body = b'{"query": {"match": {"text": "gpu memory"}}, "min_score": ' + literal + b"}"
    direct = httpx.post(f"{osmem.url}/kb/_search", content=body, headers=JSON, timeout=30)
    via = httpx.post(f"{sidecar.url}/kb/_search", content=body, headers=JSON, timeout=30)
    assert "sidecar_exception" not in via.text, via.text[:300]
    assert via.status_code == direct.status_code, (via.text[:300], direct.text[:300])
