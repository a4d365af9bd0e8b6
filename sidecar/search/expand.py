"""Expanded retrieval: the clause carrying the query text OR-ed with one clause per variant."""

from __future__ import annotations

import copy
import re
from typing import Any

from sidecar.search.query_text import TEXT_QUERIES, clause_text, text_clauses

# query_string reserves these; < and > cannot be escaped, so they go.
_QS_RESERVED = re.compile(r'([+\-=&|!(){}\[\]^"~*?:\\/])')
_SQS_RESERVED = re.compile(r'([+|\-"*()~\\])')


def escape_query_string(text: str) -> str:
    """Text taken literally by ``query_string``."""
    return _QS_RESERVED.sub(r"\\\1", text.replace("<", " ").replace(">", " "))


def escape_simple_query_string(text: str) -> str:
    """Text taken literally by ``simple_query_string``."""
    return _SQS_RESERVED.sub(r"\\\1", text)


def _find(root: dict[str, Any], query: str) -> tuple[Any, Any, str] | None:
    """(container, key, kind) of the first full-text clause whose text is ``query``."""
    for parent, key, clause, kind in text_clauses(root):
        if len(clause) == 1 and (clause_text(kind, clause[kind]) or "").strip() == query:
            return parent, key, kind
    return None


def variant_clause(kind: str, spec: Any, text: str, boost: float) -> dict[str, Any]:
    """A clause of the same type and fields as ``spec`` for ``text``, its boost scaled."""
    if kind in TEXT_QUERIES:
        field, value = next((k, v) for k, v in spec.items() if not k.startswith("_"))
        params = {k: v for k, v in value.items() if k != "_name"} if isinstance(value, dict) else {}
        original = params.get("boost", 1.0)
        params.update(query=text, boost=_scaled(original, boost))
        return {kind: {field: params}}
    params = {k: copy.deepcopy(v) for k, v in spec.items() if k != "_name"}
    if kind == "query_string":
        text = escape_query_string(text)
    elif kind == "simple_query_string":
        text = escape_simple_query_string(text)
    params.update(query=text, boost=_scaled(params.get("boost", 1.0), boost))
    return {kind: params}


def _scaled(original: Any, factor: float) -> float:
    base = float(original) if isinstance(original, (int, float)) and not isinstance(original, bool) else 1.0
    return round(base * factor, 6)


def expand_query(
    body: dict[str, Any], query: str, variants: list[str], boost: float
) -> dict[str, Any] | None:
    """A copy of ``body`` whose query-text clause is ``bool.should`` of itself and one clause per
    variant, every other clause and filter untouched; None when no clause carries ``query``."""
    if not variants or not isinstance(body.get("query"), dict):
        return None
    out = copy.deepcopy(body)
    root = {"query": out["query"]}  # only the query is searched: not aggs, highlight or suggest
    found = _find(root, query.strip())
    if found is None:
        return None
    container, key, kind = found
    clause = container[key]
    should = [clause] + [variant_clause(kind, clause[kind], v, boost) for v in variants]
    container[key] = {"bool": {"should": should, "minimum_should_match": 1}}
    out["query"] = root["query"]
    return out
