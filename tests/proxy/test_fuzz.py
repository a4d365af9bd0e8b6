"""Property-based input through a real sidecar in front of osmem-server: search bodies, raw
bytes, query strings and headers. The sidecar never answers 500, never fails with its own
exception (a 502 ``sidecar_exception`` is a bug of ours) and never hangs; the cluster's own
answers pass through."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from osmem_server import OsmemServer

from tests.conftest import RunningSidecar

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DSL_KEYS = [
    "query", "match", "multi_match", "bool", "must", "should", "filter", "term", "terms", "range",
    "from", "size", "_source", "sort", "fields", "text", "title", "ext", "rerank", "query_context",
    "query_text", "query_string", "simple_query_string", "aggs", "highlight", "rescore", "knn",
    "search_after", "track_total_hits", "stored_fields", "collapse", "min_score", "boost", "gte",
]  # fmt: skip
_text = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(["", "gpu", "\ud800", "k8s pod"])
_scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.floats(allow_nan=False) | _text
_key = st.sampled_from(DSL_KEYS) | st.text(max_size=8)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=4),
    max_leaves=25,
)
_search = st.fixed_dictionaries(
    {"query": st.fixed_dictionaries({"match": st.fixed_dictionaries({"text": _json})})},
    optional={"from": _scalar, "size": _scalar, "_source": _json, "sort": _json, "ext": _json},
)


class Both:
    """The same request through the sidecar and straight to the cluster."""

    def __init__(self, sidecar: str, cluster: str) -> None:
        self.via = httpx.Client(base_url=sidecar, timeout=20)
        self.direct = httpx.Client(base_url=cluster, timeout=20)

    def check(self, method: str, url: str, **kw: Any) -> None:
        r = self.via.request(method, url, **kw)
        if r.status_code == 502:
            assert "sidecar_exception" not in r.text, r.text[:500]
        if r.status_code >= 500:  # only where the cluster itself answers so (osmem has its 500s)
            d = self.direct.request(method, url, **kw)
            assert d.status_code == r.status_code, (r.text[:300], d.text[:300])


@pytest.fixture(scope="module")
def client(sidecar: RunningSidecar, osmem: OsmemServer) -> Both:
    return Both(sidecar.url, osmem.url)


@SETTINGS
@given(body=_json | _search, index=st.sampled_from(["kb", "plain", "kb,plain", "_all"]))
@example(body={"query": {"match": {"text": "gpu \ud800 memory"}}, "size": 3}, index="kb")
def test_any_json_search_body(client: Both, body: Any, index: str) -> None:
    raw = json.dumps(body, ensure_ascii=True).encode()  # lone surrogates travel as \ud800 escapes
    client.check("POST", f"/{index}/_search", content=raw, headers={"content-type": "application/json"})


def test_a_lone_surrogate_in_the_query_is_reranked(client: Both) -> None:
    raw = b'{"query": {"match": {"text": "gpu \\ud800 memory"}}, "size": 3}'
    r = client.via.post("/kb/_search", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied", (r.headers, r.text[:300])
    assert r.json()["hits"]["hits"][0]["_source"]["title"].startswith("GPU memory")


@SETTINGS
@given(
    raw=st.binary(max_size=300),
    ctype=st.sampled_from(["application/json", "text/plain", "", "application/x-ndjson"]),
)
def test_any_bytes_as_a_search_or_msearch_body(client: Both, raw: bytes, ctype: str) -> None:
    headers = {"content-type": ctype} if ctype else {}
    client.check("POST", "/kb/_search", content=raw, headers=headers)
    client.check("POST", "/kb/_msearch", content=raw + b"\n", headers=headers)


_param_value = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


@SETTINGS
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(
                ["q", "from", "size", "pretty", "filter_path", "_source", "sort", "df", "search_type", "x"]
            ),
            _param_value,
        ),
        max_size=5,
    )
)
def test_any_query_string(client: Both, params: list[tuple[str, str]]) -> None:
    client.check("GET", "/kb/_search", params=params)
    client.check("POST", "/kb/_search", params=params, json={"query": {"match": {"text": "gpu memory"}}})


_header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)


@SETTINGS
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-Rerank",
                "X-Rerank-Query",
                "X-Rerank-Instruction",
                "X-Rerank-Window",
                "X-Rerank-Explain",
                "X-Rerank-Min-Score",
                "X-Search-Context",
                "Content-Encoding",
                "Accept-Encoding",
                "X-Opaque-Id",
            ]
        ),
        _header_value,
        max_size=4,
    )
)
def test_any_rerank_headers(client: Both, headers: dict[str, str]) -> None:
    body = json.dumps({"query": {"match": {"text": "lora rank"}}}).encode()
    client.check("POST", "/kb/_search", content=body, headers={"content-type": "application/json", **headers})
