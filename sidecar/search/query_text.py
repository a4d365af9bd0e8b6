"""Find the text a search is about: in the query DSL, at a path, or in Lucene syntax."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

TEXT_QUERIES = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix")
STRING_QUERIES = ("multi_match", "combined_fields", "query_string", "simple_query_string")
NEGATIVE_KEYS = frozenset({"must_not", "negative", "filter", "post_filter", "aggs", "aggregations"})

_LUCENE_FIELD = re.compile(r"(?<![\w\\])[\w.*]+:")
_LUCENE_NEGATED = re.compile(r"(?<!\S)[-!]\S+")
_LUCENE_OPERATORS = re.compile(r"(?<!\S)(AND|OR|NOT|&&|\|\|)(?!\S)")
_LUCENE_BOOST = re.compile(r"[\^~][\d.]*")
_LUCENE_RANGE = re.compile(r"[\[{][^\]}]*\bTO\b[^\]}]*[\]}]")
_LUCENE_SPECIAL = re.compile(r'[+\-!(){}\[\]"*?/\\<>=|&]')


def lucene_terms(query: str) -> str:
    """Plain words of a Lucene query string: no fields, operators, boosts or ranges."""
    text = _LUCENE_RANGE.sub(" ", query)
    text = _LUCENE_NEGATED.sub(" ", text)
    text = _LUCENE_FIELD.sub(" ", text)
    text = _LUCENE_OPERATORS.sub(" ", text)
    text = _LUCENE_BOOST.sub(" ", text)
    text = _LUCENE_SPECIAL.sub(" ", text)
    return " ".join(text.split())


def clause_text(kind: str, spec: Any) -> str | None:
    """The text of one full-text query clause (``match``, ``query_string``, ...), or None."""
    if not isinstance(spec, dict):
        return None
    if kind in TEXT_QUERIES:
        for field, value in spec.items():
            if field.startswith("_"):
                continue
            if isinstance(value, dict):
                value = value.get("query")
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
        return None
    value = spec.get("query")
    if not isinstance(value, str):
        return None
    return lucene_terms(value) if kind in ("query_string", "simple_query_string") else value


def text_clauses(
    node: Any, parent: Any = None, key: Any = None
) -> Iterator[tuple[Any, Any, dict[str, Any], str]]:
    """Full-text clauses depth first, as (parent, key, clause, kind) with ``parent[key] is clause``;
    negative and filter clauses are skipped, and so is the inside of a clause."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from text_clauses(item, node, i)
        return
    if not isinstance(node, dict):
        return
    for name, value in node.items():
        if name in TEXT_QUERIES or name in STRING_QUERIES:
            yield parent, key, node, name
        elif name not in NEGATIVE_KEYS and isinstance(value, (dict, list)):
            yield from text_clauses(value, node, name)


def find_query_text(dsl: Any) -> str | None:
    """The first full-text query's text, depth first, skipping negative and filter clauses."""
    for _, _, clause, kind in text_clauses(dsl):
        text = clause_text(kind, clause[kind])
        if text and text.strip():
            return text.strip()
    return None


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def value_at_path(doc: Any, path: str) -> Any:
    """Follow a dotted path (``query.bool.should[0].match.text``, ``$.`` optional)."""
    path = path.strip()
    if path.startswith("$."):
        path = path[2:]
    node = doc
    for m in _PATH_PART.finditer(path):
        key, index = m.group(1), m.group(2)
        if index is not None or (key is not None and key.isdigit() and isinstance(node, list)):
            i = int(index if index is not None else key)
            if not isinstance(node, list) or i >= len(node):
                return None
            node = node[i]
        elif isinstance(node, dict):
            if key not in node:
                return None
            node = node[key]
        else:
            return None
    return node


def text_at_path(doc: Any, path: str) -> str | None:
    """The text at a path; a match-style object gives its ``query``."""
    value = value_at_path(doc, path)
    if isinstance(value, dict):
        value = value.get("query")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None
