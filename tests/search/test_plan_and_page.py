"""Planning a widened search and cutting the page back out of it."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecar.config import RouteConfig
from sidecar.documents import clean_text, document_text, field_value, window_texts
from sidecar.search.page import build_page
from sidecar.search.plan import Bypass, SearchPlan, plan_search
from sidecar.search.routes import match_route, split_indices

ROUTE = RouteConfig(indices=["kb", "docs*"], model="m", window=20, fields=["title", "text"])


def test_route_matching() -> None:
    routes = [ROUTE, RouteConfig(indices=["*"], model="m", fields=["t"])]
    assert match_route(routes, split_indices("kb")) == 0
    assert match_route(routes, split_indices("docs-1,kb")) == 0
    assert match_route(routes, split_indices("docs%2A")) == 0
    assert match_route(routes, split_indices("kb,other")) == 1
    assert match_route(routes, split_indices(None)) == 1
    assert match_route([ROUTE], split_indices(None)) is None
    assert match_route([ROUTE], split_indices(["kb", "docs-x"])) == 0


def test_plan_widens_and_strips() -> None:
    body = {
        "query": {"match": {"text": "q"}},
        "from": 5,
        "size": 5,
        "_source": False,
        "ext": {"rerank": {"query_context": {"query_text": "real"}}},
    }
    plan = plan_search(ROUTE, body, [("from", "2"), ("typed_keys", "true")], {})
    assert isinstance(plan, SearchPlan)
    assert (plan.from_, plan.size, plan.query) == (2, 5, "real")
    assert plan.body["from"] == 0 and plan.body["size"] == 20
    assert plan.body["_source"] == {"includes": ["title", "text"]}
    assert "ext" not in plan.body
    assert plan.params == (("typed_keys", "true"),)
    assert body["ext"] == {"rerank": {"query_context": {"query_text": "real"}}}, (
        "the client's body is not modified"
    )


def test_plan_bypass_reasons() -> None:
    q = {"query": {"match": {"text": "q"}}}
    past = plan_search(
        ROUTE, {**q, "from": 15, "size": 10}, [], {}
    )  # past the window: reranked and continued
    assert isinstance(past, SearchPlan) and (past.from_, past.size) == (15, 10)
    assert plan_search(ROUTE, {**q, "sort": ["_score"]}, [], {}) != Bypass("sort")
    assert plan_search(ROUTE, {**q, "sort": [{"_score": {"order": "asc"}}]}, [], {}) == Bypass("sort")
    assert plan_search(ROUTE, {**q, "size": -1}, [], {}) == Bypass("unparsed-paging")
    assert plan_search(ROUTE, {**q, "stored_fields": ["a"]}, [], {}) == Bypass("stored_fields")
    assert plan_search(ROUTE, q, [("filter_path", "hits.hits._id")], {}) == Bypass("filter_path")
    assert plan_search(ROUTE, [1], [], {}) == Bypass("unparsed-body")
    assert plan_search(ROUTE, q, [], {"x-rerank": "OFF"}) == Bypass("disabled-by-header")


def test_documents_text() -> None:
    src = {
        "title": "A title",
        "text": "a sentence broken\nin the middle.\nNext   one.",
        "meta": {"by": ["x", "y"]},
    }
    assert (
        document_text(src, ["title", "text"], None, 1000)
        == "A title\na sentence broken in the middle.\nNext one."
    )
    assert document_text(src, ["title", "meta.by"], "{title}: {meta.by}", 1000) == "A title: x y"
    assert document_text(src, ["title"], None, 3) == "A t"
    assert document_text(None, ["title"], None, 10) == ""
    assert clean_text("  a\u3000 b \n\n c ") == "a b\nc"


def test_page_reorders_and_restores() -> None:
    hits = [
        {"_id": str(i), "_score": 10.0 - i, "_source": {"title": f"t{i}", "text": "x", "keep": i}}
        for i in range(6)
    ]
    response = {
        "took": 3,
        "hits": {"total": {"value": 42, "relation": "eq"}, "max_score": 10.0, "hits": hits},
        "aggregations": {"a": 1},
    }
    plan = plan_search(
        ROUTE, {"query": {"match": {"t": "q"}}, "from": 1, "size": 2, "_source": ["keep"]}, [], {}
    )
    assert isinstance(plan, SearchPlan)
    scores = [0.1, 0.9, 0.5, 0.7, 0.2, 0.3]
    out = build_page(copy.deepcopy(response), plan, scores, annotate=True)
    assert [h["_id"] for h in out["hits"]["hits"]] == ["3", "2"]
    assert out["hits"]["hits"][0]["_source"] == {"keep": 3}
    assert out["hits"]["hits"][0]["_rerank"] == {"score": 0.7, "original_score": 7.0, "original_rank": 4}
    assert out["hits"]["max_score"] == 0.9
    assert (
        out["hits"]["total"] == {"value": 42, "relation": "eq"}
        and out["aggregations"] == {"a": 1}
        and out["took"] == 3
    )
    fallback = build_page(copy.deepcopy(response), plan, None, annotate=True)
    assert [h["_id"] for h in fallback["hits"]["hits"]] == ["1", "2"]
    assert "_rerank" not in fallback["hits"]["hits"][0] and fallback["hits"]["max_score"] == 10.0


@given(
    st.text(
        alphabet=st.sampled_from(
            [
                "a",
                "B",
                " ",
                "\t",
                "\n",
                "\r",
                ".",
                "(",
                "1",
                "。",
                "\u00a0",
                "\u3000",
                "\f",
                "\v",
                "\u2028",
                "é",
            ]
        ),
        max_size=40,
    )
)
def test_clean_text_skips_only_patterns_that_would_not_change_the_text(text: str) -> None:
    """The fast paths of clean_text give what the three patterns always applied give."""
    from sidecar.documents import _BROKEN_LINE, _NEWLINES, _SPACES

    reference = _NEWLINES.sub("\n", _SPACES.sub(" ", _BROKEN_LINE.sub(" ", text))).strip()
    assert clean_text(text) == reference


_TEXT = st.text(alphabet=st.sampled_from(list("ab cd.\n\t\f\v\r\u00a0\u3000é中x")), max_size=40)
_SOURCE = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["title", "text", "meta"]),
        st.one_of(
            _TEXT, st.lists(_TEXT, max_size=3), st.integers(), st.none(), st.fixed_dictionaries({"by": _TEXT})
        ),
        max_size=3,
    ),
)


@given(sources=st.lists(_SOURCE, max_size=5), max_chars=st.integers(1, 60))
def test_a_window_is_read_as_each_document_alone(sources: list[Any], max_chars: int) -> None:
    """The window's one-pass reader gives each hit the text ``document_text`` gives it, and the
    raw first field as its title, whatever the sources hold."""
    for fields, template in [
        (["title", "text"], None),
        (["text"], None),
        (["title", "meta.by", "text"], None),
        (["title", "text"], "{title}: {text}"),
    ]:
        texts, titles = window_texts(sources, fields, template, max_chars)
        assert texts == [document_text(s, fields, template, max_chars) for s in sources]
        assert titles == [field_value(s, fields[0]) for s in sources]


def test_the_widened_body_leaves_the_request_as_it_came() -> None:
    """A refused widened search is asked again as the client sent it: planning copies what it
    changes (the top level, ext) and nothing of the request is changed."""
    body = {
        "size": 5,
        "query": {"match": {"text": "gpu memory"}},
        "ext": {"rerank": {"window": 3}, "ubi": {"query_id": "q1"}, "other": {"x": 1}},
        "_source": ["title"],
    }
    sent = copy.deepcopy(body)
    plan = plan_search(ROUTE, body, [], {})
    assert isinstance(plan, SearchPlan) and body == sent
    assert plan.body["ext"] == {"other": {"x": 1}} and plan.body["size"] == 20
