"""Find the text a search is about: in the query DSL, at a path, or in Lucene syntax."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from typing import Any

TEXT_QUERIES = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix")
STRING_QUERIES = ("multi_match", "combined_fields", "query_string", "simple_query_string")
# the user's question to a vector or learned-sparse index: OpenSearch neural, neural_sparse
# ({field: {query_text}}), Elasticsearch semantic and sparse_vector ({field, query}), and the
# text an Elasticsearch knn embeds (query_vector_builder.text_embedding.model_text)
SEMANTIC_QUERIES = ("neural", "neural_sparse", "semantic", "sparse_vector", "text_embedding")
# Elasticsearch's reranking retriever: its inference_text is the text to rerank against
RERANKER = "text_similarity_reranker"
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
    if kind in ("neural", "neural_sparse"):
        value = next((v.get("query_text") for v in spec.values() if isinstance(v, dict)), None)
        return value if isinstance(value, str) else None
    if kind == "text_embedding":
        value = spec.get("model_text")
        return value if isinstance(value, str) else None
    if kind == RERANKER:
        value = spec.get("inference_text")
        return value if isinstance(value, str) else None
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


def clause_fields(kind: str, spec: Any) -> list[str] | None:
    """The fields a clause searches (boosts dropped); None when it names none (all fields)."""
    if not isinstance(spec, dict):
        return None
    if kind in TEXT_QUERIES or kind in ("neural", "neural_sparse"):
        return [f for f in spec if not f.startswith("_")][:1]
    if kind in ("semantic", "sparse_vector"):
        return [spec["field"]] if isinstance(spec.get("field"), str) else None
    if kind in STRING_QUERIES:
        named = spec.get("fields") or ([spec["default_field"]] if "default_field" in spec else None)
        return [str(f).split("^", 1)[0] for f in named] if isinstance(named, list) else None
    return None


def _searches(clause: list[str] | None, fields: Sequence[str]) -> bool:
    """Whether a clause on ``clause`` fields searches one of ``fields`` (a field, a sub-field
    such as ``title.english``, or a pattern such as ``title*``)."""
    if clause is None:
        return True
    for f in clause:
        for mine in fields:
            if f == mine or f.startswith(mine + ".") or mine.startswith(f + ".") or fnmatchcase(mine, f):
                return True
    return False


def _candidates(
    node: Any, fields: Sequence[str] | None, nested: str | None = None, should: bool = False
) -> Iterator[tuple[int, str]]:
    """(priority, text) of each clause with text, depth first. Priority: the reranker's text,
    then clauses on the route's fields before others, ``must`` (and every scoring position)
    before ``should``; semantic clauses count as on the route's fields (their text is the
    question itself). Filters and negations are skipped; a nested query's clauses count only
    when the route reads fields under its path."""
    if isinstance(node, list):
        for item in node:
            yield from _candidates(item, fields, nested, should)
        return
    if not isinstance(node, dict):
        return
    for name, value in node.items():
        if name in TEXT_QUERIES or name in STRING_QUERIES or name in SEMANTIC_QUERIES or name == RERANKER:
            text = clause_text(name, value)
            if text and text.strip():
                on = (
                    name in SEMANTIC_QUERIES
                    or fields is None
                    or _searches(clause_fields(name, value), fields)
                )
                yield (0 if name == RERANKER else 1 if on else 3) + (1 if should else 0), text.strip()
            if name != RERANKER:
                continue
        if name in NEGATIVE_KEYS or not isinstance(value, (dict, list)):
            continue
        if name == "nested" and isinstance(value, dict):
            path = value.get("path")
            if fields is not None and not any(str(f).startswith(f"{path}.") for f in fields):
                continue
        yield from _candidates(value, fields, nested, should or name == "should")


def find_query_text(dsl: Any, fields: Sequence[str] | None = None) -> str | None:
    """The text a search is about: of the clause that searches ``fields`` (any, when None),
    scoring clauses before ``should`` ones, depth first; filters and negations never count."""
    found = list(_candidates(dsl, fields))
    if not found:
        return None
    return min(enumerate(found), key=lambda x: (x[1][0], x[0]))[1][1]


def has_knn(node: Any) -> bool:
    """Whether a body searches by vector (``knn`` anywhere outside filters)."""
    if isinstance(node, list):
        return any(has_knn(x) for x in node)
    if not isinstance(node, dict):
        return False
    return any(k == "knn" or (k not in NEGATIVE_KEYS and has_knn(v)) for k, v in node.items())


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
