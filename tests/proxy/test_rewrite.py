"""Query rewriting through the proxy: expanded retrieval, variants in reranking, headers, events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from tests.conftest import CORPUS, RunningSidecar, SlowBackend, index_corpus, sidecar_config

RULES = {
    "abbreviations": {"k8s": "Kubernetes", "OOM": "out of memory"},
    "synonyms": [["restart", "reboot"]],
    "context_entity": "Kubernetes pod",
}
INDICES = ("rw-max", "rw-mean", "rw-weighted", "rw-original", "rw-file", "rw-slow")


def route(index: str, **rewrite: Any) -> dict[str, Any]:
    return {
        "indices": [index],
        "model": "slow" if index == "rw-slow" else "minilm",
        "window": 16,
        "fields": ["title", "text"],
        "template": "{title}\n{text}",
        "timeout_ms": 200 if index == "rw-slow" else 10_000,
        "fusion": "replace",
        "rewrite": rewrite,
    }


@pytest.fixture(scope="module")
def rewriting(osmem: OsmemServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSidecar]:
    for index in INDICES:
        index_corpus(osmem.url, index, CORPUS)
    folder = tmp_path_factory.mktemp("conf")
    (folder / "rules.yaml").write_text(json.dumps({"abbreviations": {"k8s": "Kubernetes"}}))
    config = sidecar_config(
        osmem.url,
        routes=[
            route("rw-max", **RULES),
            route("rw-mean", aggregate="mean", **RULES),
            route("rw-weighted", aggregate="weighted", original_weight=0.8, **RULES),
            route("rw-original", retrieval="original", **RULES),
            route("rw-file", rules="rules.yaml"),
            route("rw-slow", **RULES),
        ],
    )
    running = RunningSidecar(config, backends={"slow": SlowBackend()}, config_path=folder / "sidecar.yaml")
    yield running
    running.close()


def search(running: RunningSidecar, index: str, text: str, **headers: str) -> httpx.Response:
    body = {"query": {"multi_match": {"query": text, "fields": ["title", "text"]}}, "size": 10}
    return httpx.post(f"{running.url}/{index}/_search", json=body, headers=headers, timeout=60)


def doc_text(hit: dict[str, Any]) -> str:
    return f"{hit['_source']['title']}\n{hit['_source']['text']}"


def test_a_variant_brings_in_what_the_original_query_cannot_find(
    rewriting: RunningSidecar, osmem: OsmemServer
) -> None:
    # no document says "k8s": the cluster finds nothing for it; the variant "Kubernetes" finds one
    body = {"query": {"multi_match": {"query": "k8s", "fields": ["title", "text"]}}}
    direct = OpenSearch(osmem.url).search(index="rw-max", body=body)
    assert direct["hits"]["hits"] == []
    r = search(rewriting, "rw-max", "k8s", **{"X-Rerank-Explain": "1"})
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
    assert r.headers["x-rerank-variants"] == "1"
    hits = r.json()["hits"]["hits"]
    assert [CORPUS[int(h["_id"])]["title"] for h in hits] == ["Kubernetes pod OOMKilled"]
    assert r.json()["_rerank"] == {
        "query": "k8s",
        "variants": [{"text": "Kubernetes", "rules": ["abbreviation:k8s"]}],
        "rules": ["abbreviation:k8s"],
        "retrieval": "expanded",
    }
    # with retrieval: original the variants rerank but the cluster query is the client's
    r = search(rewriting, "rw-original", "k8s", **{"X-Rerank-Explain": "1"})
    assert r.json()["hits"]["hits"] == [] and r.json()["_rerank"]["retrieval"] == "original"


@pytest.mark.parametrize("index", ["rw-max", "rw-mean", "rw-weighted"])
def test_each_candidate_is_scored_against_the_query_and_every_variant(
    rewriting: RunningSidecar, index: str
) -> None:
    query = "k8s pod OOM restart"
    r = search(rewriting, index, query, **{"X-Rerank-Explain": "1"})
    assert r.status_code == 200 and r.headers["x-rerank"] == "applied"
    variants = [v["text"] for v in r.json()["_rerank"]["variants"]]
    assert variants == ["Kubernetes pod out of memory restart", "Kubernetes pod out of memory reboot"]
    assert r.headers["x-rerank-variants"] == "2"
    hits = r.json()["hits"]["hits"]
    texts = [doc_text(h) for h in hits]
    per_query = [rewriting.scores("minilm", q, texts) for q in [query, *variants]]
    for i, hit in enumerate(hits):
        column = [s[i] for s in per_query]
        expected = {
            "rw-max": max(column),
            "rw-mean": sum(column) / 3,
            "rw-weighted": 0.8 * column[0] + 0.2 * (column[1] + column[2]) / 2,
        }[index]
        assert hit["_score"] == pytest.approx(expected, abs=1e-5)
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_the_event_records_the_variants_rules_and_per_query_scores(rewriting: RunningSidecar) -> None:
    r = search(rewriting, "rw-max", "how to restart", **{"X-Search-Context": "Kubernetes deployment"})
    event = httpx.get(f"{rewriting.admin_url}/_sidecar/events/{r.headers['x-rerank-event']}").json()
    assert event["query"] == "how to restart"
    assert event["retrieval"] == "expanded"
    assert [v["text"] for v in event["variants"]] == [
        "how to restart Kubernetes deployment",
        "how to reboot Kubernetes deployment",
    ]
    assert event["rules"] == ["entity:append", "synonym:restart=>reboot"]
    assert all(len(row["query_scores"]) == 3 for row in event["final"])
    assert all(row["model_score"] == pytest.approx(max(row["query_scores"])) for row in event["final"])


def test_rules_from_a_file_beside_the_config(rewriting: RunningSidecar) -> None:
    r = search(rewriting, "rw-file", "k8s", **{"X-Rerank-Explain": "true"})
    assert r.json()["_rerank"]["variants"] == [{"text": "Kubernetes", "rules": ["abbreviation:k8s"]}]
    assert len(r.json()["hits"]["hits"]) == 1


def test_no_variants_no_rewrite_block_and_explain_off(
    rewriting: RunningSidecar, sidecar: RunningSidecar
) -> None:
    r = search(rewriting, "rw-max", "shipping to Norway")
    assert r.headers["x-rerank-variants"] == "0" and "_rerank" not in r.json()
    r = search(sidecar, "kb", "k8s pod", **{"X-Rerank-Explain": "1"})  # a route without rewrite
    assert r.headers["x-rerank-variants"] == "0"
    assert r.json()["_rerank"] == {"query": "k8s pod", "variants": [], "rules": [], "retrieval": "original"}


def test_fallback_keeps_the_expanded_retrieval(rewriting: RunningSidecar) -> None:
    r = search(rewriting, "rw-slow", "k8s", **{"X-Rerank-Explain": "1"})
    assert r.headers["x-rerank"] == "fallback" and r.headers["x-rerank-reason"] == "timeout"
    assert r.headers["x-rerank-variants"] == "1"
    assert [CORPUS[int(h["_id"])]["title"] for h in r.json()["hits"]["hits"]] == ["Kubernetes pod OOMKilled"]


def test_msearch_rewrites_each_sub_search(rewriting: RunningSidecar) -> None:
    lines = [
        {"index": "rw-max"},
        {"query": {"match": {"title": "k8s"}}},
        {"index": "plain"},
        {"query": {"match": {"text": "k8s"}}},
        {"index": "rw-original"},
        {"query": {"multi_match": {"query": "k8s", "fields": ["title", "text"]}}},
    ]
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    r = httpx.post(
        f"{rewriting.url}/_msearch",
        content=body,
        headers={"content-type": "application/x-ndjson", "x-rerank-explain": "1"},
        timeout=60,
    )
    assert r.status_code == 200
    first, unrouted, original = r.json()["responses"]
    assert [h["_id"] for h in first["hits"]["hits"]] == ["10"]
    assert first["_rerank"]["variants"] == [{"text": "Kubernetes", "rules": ["abbreviation:k8s"]}]
    assert unrouted["hits"]["hits"] == [] and "_rerank" not in unrouted
    assert original["hits"]["hits"] == [] and original["_rerank"]["retrieval"] == "original"
    # the summary header adds up the variants of every sub-search
    used = sum(len(x["_rerank"]["variants"]) for x in (first, original))
    assert used >= 1 and r.headers["x-rerank-variants"] == str(used)


def test_opensearch_py_reads_a_rewritten_search(rewriting: RunningSidecar) -> None:
    client = OpenSearch(rewriting.url)
    res = client.search(index="rw-max", body={"query": {"match": {"title": "k8s pod OOM"}}, "size": 3})
    assert res["hits"]["hits"][0]["_id"] == "10"


def test_rewrite_rules_are_changed_through_the_admin_api(rewriting: RunningSidecar) -> None:
    admin = f"{rewriting.admin_url}/_sidecar/config"
    cfg = httpx.get(admin).json()
    before = json.loads(json.dumps(cfg))
    cfg["routes"][4]["rewrite"]["abbreviations"] = {"pod": "Kubernetes pod"}
    bad = json.loads(json.dumps(cfg))
    bad["routes"][4]["rewrite"]["patterns"] = ["(x => y"]
    r = httpx.put(admin, json=bad)
    assert (
        r.status_code == 400
        and "routes.4.rewrite.patterns: 0: invalid pattern" in r.json()["error"]["reason"]
    )
    try:
        assert httpx.put(admin, json=cfg).status_code == 200
        r = search(rewriting, "rw-file", "pod", **{"X-Rerank-Explain": "1"})
        assert r.json()["_rerank"]["variants"] == [{"text": "Kubernetes pod", "rules": ["abbreviation:pod"]}]
    finally:
        assert httpx.put(admin, json=before).status_code == 200


def test_pairs_scored_once_are_not_scored_again(rewriting: RunningSidecar) -> None:
    assert rewriting.server.runtime is not None
    stats = rewriting.server.runtime.scorers["minilm"].stats
    first = search(rewriting, "rw-mean", "k8s restart")
    assert first.headers["x-rerank-variants"] == "2"
    misses, hits = stats.cache_misses, stats.cache_hits
    again = search(rewriting, "rw-mean", "k8s restart")
    assert again.json()["hits"] == first.json()["hits"]
    assert stats.cache_misses == misses  # every (query or variant, document) pair came from the cache
    assert stats.cache_hits - hits == 3 * len(first.json()["hits"]["hits"])


def test_metrics_count_variants_and_rules_by_kind(rewriting: RunningSidecar) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def counts() -> dict[tuple[str, str], float]:
        text = httpx.get(f"{rewriting.admin_url}/_sidecar/metrics").text
        return {
            (s.name, s.labels.get("kind", "")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.startswith("rerank_sidecar_rewrite") and s.name.endswith("_total")
        }

    before = counts()
    r = search(rewriting, "rw-max", "k8s pod restart")
    assert r.headers["x-rerank-variants"] == "2"
    after = counts()
    assert (
        after[("rerank_sidecar_rewrite_variants_total", "")]
        - before.get(("rerank_sidecar_rewrite_variants_total", ""), 0)
        == 2
    )
    assert (
        after[("rerank_sidecar_rewrite_rules_total", "synonym")]
        - before.get(("rerank_sidecar_rewrite_rules_total", "synonym"), 0)
        == 1
    )
    assert ("rerank_sidecar_rewrite_rules_total", "abbreviation") in after
    event = httpx.get(f"{rewriting.admin_url}/_sidecar/events/{r.headers['x-rerank-event']}").json()
    assert 0 <= event["timings"]["rewrite_ms"] < event["timings"]["total_ms"]
