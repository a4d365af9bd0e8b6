"""Expanded retrieval: the DSL for each clause type, valid for the cluster, filters kept."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from sidecar.search.expand import escape_query_string, escape_simple_query_string, expand_query

FILTER = {"term": {"tag": "gpu"}}


def body_with(clause: dict[str, Any], where: str) -> dict[str, Any]:
    if where == "root":
        return {"query": clause}
    if where == "must":
        return {"query": {"bool": {"must": [clause], "filter": [FILTER]}}}
    if where == "should":
        return {"query": {"bool": {"should": clause, "filter": FILTER, "minimum_should_match": 1}}}
    return {
        "query": {
            "function_score": {"query": {"bool": {"must": clause, "must_not": [{"ids": {"values": ["9"]}}]}}}
        }
    }


CLAUSES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "match": ({"match": {"text": "pod memory"}}, {"match": {"text": {"query": "V", "boost": 0.5}}}),
    "match_object": (
        {"match": {"text": {"query": "pod memory", "operator": "or", "boost": 2, "_name": "main"}}},
        {"match": {"text": {"query": "V", "operator": "or", "boost": 1.0}}},
    ),
    "match_phrase": (
        {"match_phrase": {"title": "pod memory"}},
        {"match_phrase": {"title": {"query": "V", "boost": 0.5}}},
    ),
    "match_bool_prefix": (
        {"match_bool_prefix": {"text": "pod memory"}},
        {"match_bool_prefix": {"text": {"query": "V", "boost": 0.5}}},
    ),
    "multi_match": (
        {"multi_match": {"query": "pod memory", "fields": ["title^2", "text"], "type": "best_fields"}},
        {"multi_match": {"query": "V", "fields": ["title^2", "text"], "type": "best_fields", "boost": 0.5}},
    ),
    "combined_fields": (
        {"combined_fields": {"query": "pod memory", "fields": ["title", "text"]}},
        {"combined_fields": {"query": "V", "fields": ["title", "text"], "boost": 0.5}},
    ),
    "query_string": (
        {"query_string": {"query": "pod memory", "default_field": "text"}},
        {"query_string": {"query": "V", "default_field": "text", "boost": 0.5}},
    ),
    "simple_query_string": (
        {"simple_query_string": {"query": "pod memory", "fields": ["text"]}},
        {"simple_query_string": {"query": "V", "fields": ["text"], "boost": 0.5}},
    ),
}


def find_should(node: Any) -> list[Any] | None:
    if isinstance(node, dict):
        b = node.get("bool")
        if (
            isinstance(b, dict)
            and b.get("minimum_should_match") == 1
            and isinstance(b.get("should"), list)
            and len(b["should"]) > 1
        ):
            return b["should"]  # type: ignore[no-any-return]
        for v in node.values():
            found = find_should(v)
            if found is not None:
                return found
    if isinstance(node, list):
        for v in node:
            found = find_should(v)
            if found is not None:
                return found
    return None


@pytest.mark.parametrize("where", ["root", "must", "should", "nested"])
@pytest.mark.parametrize("kind", list(CLAUSES))
def test_the_clause_is_or_ed_with_one_of_its_kind_per_variant(kind: str, where: str) -> None:
    clause, expected = CLAUSES[kind]
    body = body_with(clause, where)
    before = copy.deepcopy(body)
    out = expand_query(body, "pod memory", ["V"], 0.5)
    assert body == before  # the input is not changed
    assert out is not None
    should = find_should(out)
    assert should == [clause, expected]
    # everything else is as it was: put the original clause back and compare
    restored = copy.deepcopy(out)
    text = str(restored).replace(
        str({"bool": {"should": [clause, expected], "minimum_should_match": 1}}), str(clause)
    )
    assert text == str(before)


def test_no_expansion_without_a_clause_carrying_the_query_text() -> None:
    body = {"query": {"bool": {"filter": [{"match": {"text": "pod memory"}}]}}}
    assert expand_query(body, "pod memory", ["V"], 0.5) is None  # a filter clause does not score
    assert expand_query({"query": {"match": {"text": "other"}}}, "pod memory", ["V"], 0.5) is None
    assert expand_query({}, "pod memory", ["V"], 0.5) is None
    assert expand_query({"query": {"match": {"text": "pod memory"}}}, "pod memory", [], 0.5) is None
    # the text in aggs or highlight is not the query
    body = {
        "query": {"term": {"tag": "x"}},
        "highlight": {"highlight_query": {"match": {"text": "pod memory"}}},
    }
    assert expand_query(body, "pod memory", ["V"], 0.5) is None


def test_query_string_variants_are_escaped() -> None:
    assert (
        escape_query_string('Qwen3-Reranker-0.6B (v2) a/b: "x" <y>')
        == 'Qwen3\\-Reranker\\-0.6B \\(v2\\) a\\/b\\: \\"x\\"  y '
    )
    assert escape_simple_query_string("a-b | c*") == "a\\-b \\| c\\*"
    body = {"query": {"query_string": {"query": "title:pod AND memory", "default_field": "text"}}}
    out = expand_query(body, "pod memory", ["Kubernetes-pod memory"], 0.5)
    assert out is not None
    assert out["query"]["bool"]["should"][1]["query_string"]["query"] == "Kubernetes\\-pod memory"


TAGGED = [
    {"title": "Pod memory limit", "text": "A pod memory limit caps the container.", "tag": "gpu"},
    {
        "title": "Pod memory request",
        "text": "The pod memory request is what the scheduler reserves.",
        "tag": "k8s",
    },
    {
        "title": "Out of memory killer",
        "text": "Kubernetes kills a workload that exceeds its limit.",
        "tag": "gpu",
    },
    {"title": "Kubernetes workloads", "text": "Kubernetes runs each workload in containers.", "tag": "k8s"},
    {"title": "Unrelated", "text": "Shipping to Norway takes a week.", "tag": "gpu"},
]


@pytest.fixture(scope="module")
def tagged(osmem: OsmemServer) -> OpenSearch:
    from tests.conftest import index_corpus

    index_corpus(osmem.url, "tagged", TAGGED)
    return OpenSearch(osmem.url)


@pytest.mark.parametrize("where", ["root", "must", "should", "nested"])
@pytest.mark.parametrize("kind", list(CLAUSES))
def test_the_cluster_accepts_the_expanded_query_and_keeps_the_filters(
    tagged: OpenSearch, kind: str, where: str
) -> None:
    clause = CLAUSES[kind][0]
    if kind in ("match_phrase",):
        clause = {"match_phrase": {"title": "pod memory"}}
    body = body_with(clause, where)
    out = expand_query(body, "pod memory", ["Kubernetes workload"], 0.5)
    assert out is not None
    original = {h["_id"] for h in tagged.search(index="tagged", body={**body, "size": 20})["hits"]["hits"]}
    expanded = tagged.search(index="tagged", body={**out, "size": 20})["hits"]["hits"]
    ids = {h["_id"] for h in expanded}
    assert original <= ids  # everything the original query found is still found
    if where in ("must", "should"):
        assert all(TAGGED[int(i)]["tag"] == "gpu" for i in ids)  # the client's filter holds
    if kind != "match_phrase" and where in ("root", "nested"):
        assert ids - original, "a variant brings in documents the original query could not retrieve"
