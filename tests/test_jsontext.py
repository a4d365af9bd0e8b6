"""A search's JSON read and written fast, and exactly as the standard library would."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecar.jsontext import compact, loads

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_what_is_read_is_what_json_reads(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    assert loads(raw) == json.loads(raw)
    assert json.loads(compact(doc)) == doc


def test_numbers_orjson_would_not_keep_are_read_by_the_standard_library() -> None:
    raw = b'{"id": 123456789012345678901234567890, "n": 9223372036854775807, "x": 1e400}'
    doc = loads(raw)
    assert doc["id"] == 123456789012345678901234567890 and isinstance(doc["id"], int)
    assert doc["n"] == 9223372036854775807 and math.isinf(doc["x"])
    assert compact({"id": 10**30}) == b'{"id":1000000000000000000000000000000}'


def test_lone_surrogates_and_nan_fall_back_and_stay_valid_utf8() -> None:
    assert loads(b'{"q": "\\ud800x"}') == {"q": "\ud800x"}
    assert loads(b"[NaN]")[0] != loads(b"[NaN]")[0]
    out = compact({"q": "\ud800x", 1: "int key"})
    out.decode("utf-8")  # escaped, never raw surrogates
    assert json.loads(out) == {"q": "\ud800x", "1": "int key"}


def test_non_finite_numbers_are_written_as_the_standard_library_writes_them() -> None:
    """A client's NaN reaches the cluster as NaN (which refuses it), never as null."""
    doc = {"min_score": float("nan"), "boost": float("inf"), "none": None}
    assert compact(doc) == json.dumps(doc, separators=(",", ":")).encode()
    assert compact(doc) == b'{"min_score":NaN,"boost":Infinity,"none":null}'
