"""Query text extraction from the DSL, paths and Lucene syntax."""

from __future__ import annotations

import pytest

from sidecar.search.query_text import find_query_text, lucene_terms, text_at_path


@pytest.mark.parametrize(
    ("dsl", "text"),
    [
        ({"match": {"title": "lora rank"}}, "lora rank"),
        ({"match": {"title": {"query": "lora rank", "operator": "and"}}}, "lora rank"),
        ({"match_phrase": {"text": "gpu memory"}}, "gpu memory"),
        ({"multi_match": {"query": "k8s pod", "fields": ["a", "b"]}}, "k8s pod"),
        ({"combined_fields": {"query": "java types", "fields": ["a"]}}, "java types"),
        ({"query_string": {"query": "title:lora AND rank^2"}}, "lora rank"),
        ({"simple_query_string": {"query": '"gpu memory" +fraction'}}, "gpu memory fraction"),
        (
            {
                "bool": {
                    "filter": [{"match": {"x": "filtered"}}],
                    "must": [{"term": {"a": 1}}, {"match": {"t": "wanted"}}],
                }
            },
            "wanted",
        ),
        ({"bool": {"must_not": [{"match": {"x": "no"}}], "should": [{"match": {"t": "yes"}}]}}, "yes"),
        ({"function_score": {"query": {"match": {"t": "inner"}}, "boost": 2}}, "inner"),
        ({"match_all": {}}, None),
        ({"term": {"tag": "x"}}, None),
        ({"match": {"t": ""}}, None),
    ],
)
def test_find_query_text(dsl: object, text: str | None) -> None:
    assert find_query_text(dsl) == text


def test_lucene_terms_drop_syntax() -> None:
    assert (
        lucene_terms('title:(lora AND rank) OR text:"gpu memory"^2 -excluded date:[2020 TO 2021] fuzz~2')
        == "lora rank gpu memory fuzz"
    )


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("query.match.text.query", "deep"),
        ("$.query.match.text.query", "deep"),
        ("query.bool.should[0].match.t", "first"),
        ("query.bool.should.1.match.t", "second"),
        ("query.match.text", "deep"),
        ("query.nope", None),
        ("query.bool.should[5].match.t", None),
    ],
)
def test_text_at_path(path: str, text: str | None) -> None:
    doc = {
        "query": {
            "match": {"text": {"query": "deep"}},
            "bool": {"should": [{"match": {"t": "first"}}, {"match": {"t": "second"}}]},
        }
    }
    assert text_at_path(doc, path) == text


TEXT = ["text", "title"]


@pytest.mark.parametrize(
    ("dsl", "text"),
    [
        # the clause on the route's fields, not the first one
        ({"bool": {"must": [{"match": {"author": "alice"}}, {"match": {"text": "gpu leak"}}]}}, "gpu leak"),
        ({"bool": {"must": [{"match": {"author": "alice"}}]}}, "alice"),  # none on them: the first
        # must before should, on the route's fields before either
        ({"bool": {"should": [{"match": {"text": "soft"}}], "must": [{"match": {"text": "hard"}}]}}, "hard"),
        ({"bool": {"should": [{"match": {"text": "on"}}], "must": [{"match": {"tag": "off"}}]}}, "on"),
        ({"multi_match": {"query": "pods", "fields": ["title^3", "body"]}}, "pods"),
        ({"match": {"text.english": "stemmed"}}, "stemmed"),  # a sub-field of a route field
        # a nested query counts only on nested fields the route reads
        (
            {
                "bool": {
                    "must": [
                        {"nested": {"path": "comments", "query": {"match": {"comments.text": "nested"}}}},
                        {"match": {"tag": "later"}},
                    ]
                }
            },
            "later",
        ),
        # OpenSearch neural search
        ({"neural": {"embedding": {"query_text": "vector words", "model_id": "m", "k": 10}}}, "vector words"),
        ({"neural_sparse": {"sparse": {"query_text": "sparse words", "model_id": "m"}}}, "sparse words"),
        (
            {"hybrid": {"queries": [{"match": {"text": "hybrid"}}, {"neural": {"e": {"query_text": "h"}}}]}},
            "hybrid",
        ),
        # Elasticsearch semantic and learned-sparse queries
        ({"semantic": {"field": "content", "query": "semantic words"}}, "semantic words"),
        ({"sparse_vector": {"field": "ml.tokens", "inference_id": "elser", "query": "elser"}}, "elser"),
        ({"knn": {"field": "v", "query_vector": [0.1, 0.2]}}, None),
    ],
)
def test_the_clause_on_the_routes_fields_speaks(dsl: object, text: str | None) -> None:
    assert find_query_text({"query": dsl}, TEXT) == text


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"retriever": {"standard": {"query": {"match": {"text": "standard"}}}}}, "standard"),
        (
            {
                "retriever": {
                    "rrf": {
                        "retrievers": [
                            {"standard": {"query": {"match": {"text": "fused"}}}},
                            {"knn": {"field": "v", "query_vector": [1.0]}},
                        ]
                    }
                }
            },
            "fused",
        ),
        (
            {
                "retriever": {
                    "linear": {
                        "retrievers": [{"retriever": {"standard": {"query": {"match": {"text": "lin"}}}}}]
                    }
                }
            },
            "lin",
        ),
        (
            {
                "retriever": {
                    "text_similarity_reranker": {
                        "retriever": {"standard": {"query": {"match": {"text": "retrieve this"}}}},
                        "field": "text",
                        "inference_text": "rerank by this",
                        "rank_window_size": 50,
                    }
                }
            },
            "rerank by this",
        ),
        (
            {
                "knn": {
                    "field": "v",
                    "query_vector_builder": {"text_embedding": {"model_id": "e5", "model_text": "embed"}},
                }
            },
            "embed",
        ),
    ],
)
def test_retrievers_and_top_level_knn(body: dict[str, object], text: str) -> None:
    from sidecar.config import RouteConfig
    from sidecar.search.plan import SearchPlan, plan_search

    route = RouteConfig(indices=["kb"], model="m", fields=TEXT)
    plan = plan_search(route, body, [], {})
    assert isinstance(plan, SearchPlan) and plan.query == text


def test_a_vector_search_with_no_text_has_its_own_reason() -> None:
    from sidecar.config import RouteConfig
    from sidecar.search.plan import Bypass, SearchPlan, plan_search
    from sidecar.vocab import Reason

    route = RouteConfig(indices=["kb"], model="m", fields=TEXT)
    body = {"knn": {"field": "v", "query_vector": [0.1], "k": 5}}
    assert plan_search(route, body, [], {}) == Bypass(Reason.KNN_NO_TEXT)
    os_knn = {"query": {"knn": {"v": {"vector": [0.1], "k": 5}}}}
    assert plan_search(route, os_knn, [], {}) == Bypass(Reason.KNN_NO_TEXT)
    with_text = plan_search(route, os_knn, [], {"x-rerank-query": "what the user typed"})
    assert isinstance(with_text, SearchPlan) and with_text.query == "what the user typed"
    assert plan_search(route, {"query": {"match_all": {}}}, [], {}) == Bypass(Reason.NO_QUERY_TEXT)
