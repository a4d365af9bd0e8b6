"""Local _source filtering matches what OpenSearch returns for the same filter."""

from __future__ import annotations

import pytest

from sidecar.search.source_filter import (
    SourceFilter,
    apply_filter,
    parse_body_source,
    parse_params_source,
    to_body,
    widened,
)

SRC = {
    "title": "T",
    "text": "X",
    "meta": {"a": 1, "b": {"c": 2}},
    "tags": ["x", "y"],
    "objs": [{"k": 1, "j": 2}],
}


@pytest.mark.parametrize(
    ("f", "out"),
    [
        (SourceFilter(), SRC),
        (SourceFilter(includes=("title",)), {"title": "T"}),
        (SourceFilter(includes=("meta.b",)), {"meta": {"b": {"c": 2}}}),
        (SourceFilter(includes=("meta",)), {"meta": {"a": 1, "b": {"c": 2}}}),
        (SourceFilter(includes=("m*",)), {"meta": {"a": 1, "b": {"c": 2}}}),
        (SourceFilter(includes=("objs.k",)), {"objs": [{"k": 1}]}),
        (SourceFilter(excludes=("meta.a", "t*")), {"meta": {"b": {"c": 2}}, "objs": [{"k": 1, "j": 2}]}),
        (SourceFilter(includes=("t*",), excludes=("text",)), {"title": "T", "tags": ["x", "y"]}),
    ],
)
def test_apply_filter(f: SourceFilter, out: dict[str, object]) -> None:
    assert apply_filter(SRC, f) == out


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, SourceFilter()),
        (True, SourceFilter()),
        (False, SourceFilter(enabled=False)),
        ("title", SourceFilter(includes=("title",))),
        (["a", "b"], SourceFilter(includes=("a", "b"))),
        ({"includes": ["a"], "excludes": "b"}, SourceFilter(includes=("a",), excludes=("b",))),
        ({"include": ["a"]}, SourceFilter(includes=("a",))),
        (12, None),
        ({"includes": [1]}, None),
        ({"other": ["a"]}, None),
    ],
)
def test_parse_body_source(value: object, parsed: SourceFilter | None) -> None:
    assert parse_body_source(value) == parsed


def test_params_override_body() -> None:
    body = SourceFilter(includes=("a",))
    assert parse_params_source({"_source": "false"}, body) == SourceFilter(enabled=False)
    assert parse_params_source({"_source_includes": "x,y"}, body) == SourceFilter(includes=("x", "y"))
    assert parse_params_source({"_source_excludes": "z"}, SourceFilter()) == SourceFilter(excludes=("z",))
    assert parse_params_source({}, body) == body


def test_widened_fetches_the_route_fields_and_keeps_the_clients_view() -> None:
    fields = ("title", "text")
    off = widened(SourceFilter(enabled=False), fields)
    assert to_body(off) == {"includes": ["title", "text"]}
    inc = widened(SourceFilter(includes=("tags",), excludes=("t*",)), fields)
    assert inc.includes == ("tags", "title", "text") and inc.excludes == ()
    assert widened(SourceFilter(), fields) == SourceFilter()
    # Whatever was widened, the client's filter applied to the widened source is the client's view.
    client = SourceFilter(includes=("tags",), excludes=("t*",))
    assert apply_filter(apply_filter(SRC, inc), client) == apply_filter(SRC, client)
