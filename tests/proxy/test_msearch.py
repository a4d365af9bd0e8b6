"""_msearch: routed sub-searches are reranked, the others come back as the cluster sent them."""

from __future__ import annotations

import json

import httpx

from tests.conftest import RunningSidecar
from tests.proxy.test_rerank import QUERY


def _ndjson(*docs: object) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def test_mixed_msearch(direct: httpx.Client, proxied: httpx.Client) -> None:
    body = _ndjson(
        {"index": "kb"},
        {**QUERY, "size": 3},
        {"index": "plain"},
        {**QUERY, "size": 3},
        {},
        {**QUERY, "size": 2},  # the path's default index: kb
        {"index": "kb"},
        {**QUERY, "size": 0},
    )
    headers = {"content-type": "application/x-ndjson"}
    p = proxied.post("/kb/_msearch", content=body, headers=headers)
    d = direct.post("/kb/_msearch", content=body, headers=headers)
    assert p.status_code == 200
    assert p.headers["x-rerank"] == "applied"
    assert p.headers["x-rerank-msearch"] == "applied,bypass:no-route,applied,bypass:size-0"
    pr, dr = p.json()["responses"], d.json()["responses"]
    assert len(pr) == 4
    single = proxied.post("/kb/_search", json={**QUERY, "size": 3}).json()["hits"]["hits"]
    assert [h["_id"] for h in pr[0]["hits"]["hits"]] == [h["_id"] for h in single]
    assert pr[1]["hits"] == dr[1]["hits"]
    assert len(pr[2]["hits"]["hits"]) == 2 and "_rerank" in pr[2]["hits"]["hits"][0]
    assert pr[3]["hits"]["hits"] == [] and pr[3]["hits"]["total"] == dr[3]["hits"]["total"]


def test_msearch_with_nothing_routed_is_forwarded(direct: httpx.Client, proxied: httpx.Client) -> None:
    body = _ndjson({"index": "plain"}, {**QUERY, "size": 1})
    p = proxied.post("/_msearch", content=body, headers={"content-type": "application/x-ndjson"})
    assert p.headers["x-rerank"] == "bypass"
    d = direct.post("/_msearch", content=body, headers={"content-type": "application/x-ndjson"})
    assert p.json()["responses"][0]["hits"] == d.json()["responses"][0]["hits"]


def test_msearch_fallback_sub_search(proxied: httpx.Client) -> None:
    body = _ndjson({"index": "broken"}, {**QUERY, "size": 2}, {"index": "kb"}, {**QUERY, "size": 2})
    p = proxied.post("/_msearch", content=body, headers={"content-type": "application/x-ndjson"})
    assert p.headers["x-rerank-msearch"] == "fallback:model-error,applied"
    assert p.headers["x-rerank"] == "applied"


def test_every_sub_search_leaves_an_event_bypassed_ones_too(
    sidecar: RunningSidecar, proxied: httpx.Client
) -> None:
    body = _ndjson({"index": "plain"}, {**QUERY, "size": 1}, {"index": "kb"}, {**QUERY, "size": 0})
    p = proxied.post("/_msearch", content=body, headers={"content-type": "application/x-ndjson"})
    assert p.headers["x-rerank"] == "bypass" and p.headers["x-rerank-reason"] == "no-route,size-0"
    events = httpx.get(f"{sidecar.admin_url}/_sidecar/events", params={"limit": 2}).json()["events"]
    assert [(e["index"], e["status"], e["reason"]) for e in reversed(events)] == [
        ("plain", "bypass", "no-route"),
        ("kb", "bypass", "size-0"),
    ]
    assert events[0]["route"] == "kb,docs-*" and events[1]["route"] is None


def test_the_urls_parameters_count_for_each_sub_search(proxied: httpx.Client) -> None:
    body = _ndjson({"index": "kb"}, {**QUERY, "size": 2})
    p = proxied.post(
        "/_msearch",
        params={"filter_path": "responses.hits.hits._id"},
        content=body,
        headers={"content-type": "application/x-ndjson"},
    )
    # a filtered answer cannot be reranked: the sub-search is bypassed as a search would be
    assert p.headers["x-rerank"] == "bypass" and p.headers["x-rerank-reason"] == "filter_path"
    assert p.json() == {"responses": [{"hits": {"hits": [{"_id": h} for h in _ids(proxied)]}}]}


def _ids(proxied: httpx.Client) -> list[str]:
    r = proxied.post("/kb/_search", json={**QUERY, "size": 2}, headers={"X-Rerank": "off"})
    return [h["_id"] for h in r.json()["hits"]["hits"]]


def test_blank_headers_and_crlf_are_read_as_the_cluster_reads_them(
    direct: httpx.Client, proxied: httpx.Client
) -> None:
    """A blank header line is ``{}`` (the URL's index); ``\\r\\n`` ends lines too."""
    query = json.dumps({**QUERY, "size": 2})
    body = f"\r\n{query}\n\n{query}\r\n{json.dumps({'index': 'plain'})}\n{query}\n"
    headers = {"content-type": "application/x-ndjson"}
    p = proxied.post("/kb/_msearch", content=body, headers=headers)
    d = direct.post("/kb/_msearch", content=body, headers=headers)
    assert d.status_code == 200 and len(d.json()["responses"]) == 3
    assert p.status_code == 200 and len(p.json()["responses"]) == 3
    assert p.headers["x-rerank-msearch"] == "applied,applied,bypass:no-route"
    assert all("_rerank" in r["hits"]["hits"][0] for r in p.json()["responses"][:2])


def test_ndjson_the_cluster_refuses_gets_the_clusters_own_answer(
    direct: httpx.Client, proxied: httpx.Client
) -> None:
    headers = {"content-type": "application/x-ndjson"}
    for body in (
        _ndjson({"index": "kb"}, QUERY).rstrip("\n"),  # the last line without its newline
        _ndjson({"index": "kb"}) + "{not json\n",
    ):
        p = proxied.post("/_msearch", content=body, headers=headers)
        d = direct.post("/_msearch", content=body, headers=headers)
        assert (p.status_code, p.json()) == (d.status_code, d.json())
        assert p.headers["x-rerank"] == "bypass" and p.headers["x-rerank-reason"] == "unparsed-body"
