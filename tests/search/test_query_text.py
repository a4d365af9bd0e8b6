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
