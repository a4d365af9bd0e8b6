"""Decide whether a search is reranked, and how to widen it for the candidate window."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config import RouteConfig
from sidecar.rewrite.rules import Rewrite
from sidecar.search.query_text import find_query_text, has_knn, lucene_terms, text_at_path
from sidecar.search.source_filter import (
    SourceFilter,
    parse_body_source,
    parse_params_source,
    to_body,
    widened,
)
from sidecar.vocab import Reason

# URL parameters the widened request sets in the body instead.
_WIDENED_PARAMS = frozenset(
    {"from", "size", "_source", "_source_includes", "_source_excludes", "_source_include", "_source_exclude"}
)


@dataclass(frozen=True)
class Bypass:
    """Forward unchanged, for this reason (a language bypass says which query, in which
    language: the event keeps them)."""

    reason: Reason
    query: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class SearchPlan:
    """How one search is widened, reranked and paged back."""

    route: str  # the route's name
    query: str
    from_: int
    size: int
    source: SourceFilter
    body: dict[str, Any]
    params: tuple[tuple[str, str], ...]
    instruction: str | None = None
    explain: bool = False  # X-Rerank-Explain: the variants go back in the body under _rerank
    rewrite: Rewrite | None = None
    retrieval: str = "original"  # expanded: the cluster query carries the variants too
    # what the request itself asks for in place of the route's (Elasticsearch's
    # text_similarity_reranker: its field and rank_window_size)
    window: int | None = None
    fields: tuple[str, ...] | None = None
    # the request's ext.ubi (User Behavior Insights: query_id, client_id, ...), taken out of
    # what the cluster gets: the sidecar answers it as the UBI plugin would
    ubi: Mapping[str, Any] | None = None
    # the query's language (sidecar/language.py: zh, latin, ...), where the route's model does
    # not read every language; window_language: the query has no letters, the window's texts tell
    language: str | None = None
    window_language: bool = False
    model: str | None = None  # the route's models_by_language model for that language

    def effective(self, route: RouteConfig) -> RouteConfig:
        """The route as this search uses it (its language's model, where it has one)."""
        route = overridden(route, self.window, self.fields)
        return route if self.model is None else route.model_copy(update={"model": self.model})

    def past_window(self, start: int, count: int) -> dict[str, Any]:
        """The widened body for the cluster's hits ``start`` to ``start + count``: a page past
        the window continues the cluster's order of the same (widened) query."""
        return {**self.body, "from": start, "size": count}

    @property
    def queries(self) -> list[str]:
        """The original query and its variants: what each candidate is scored against."""
        return [self.query, *(v.text for v in self.rewrite.variants)] if self.rewrite else [self.query]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _is_score_sort(sort: Any) -> bool:
    items = sort if isinstance(sort, list) else [sort]
    for item in items:
        if isinstance(item, str):
            name, _, order = item.partition(":")
            if name != "_score" or order not in ("", "desc"):
                return False
        elif isinstance(item, dict) and len(item) == 1 and "_score" in item:
            spec = item["_score"]
            order = spec.get("order", "desc") if isinstance(spec, dict) else spec
            if order != "desc":
                return False
        else:
            return False
    return True


RERANK_WINDOW = 10  # text_similarity_reranker's rank_window_size default


def overridden(route: RouteConfig, window: int | None, fields: tuple[str, ...] | None) -> RouteConfig:
    """The route with the window and the fields a request asks for in place of its own."""
    if window is None and fields is None:
        return route
    update: dict[str, Any] = {}
    if window is not None:
        update["window"] = window
    if fields is not None:
        update.update(fields=list(fields), template=None)
    return route.model_copy(update=update)


def _with_filter(retriever: dict[str, Any], extra: Any) -> dict[str, Any]:
    """A retriever with a filter added: on ``standard`` and ``knn`` its own, on ``rrf`` and
    ``linear`` each child's (as Elasticsearch applies a parent's filter)."""
    ((kind, spec),) = retriever.items()
    spec = dict(spec)
    if kind in ("standard", "knn"):
        mine = spec.get("filter")
        spec["filter"] = [
            *(mine if isinstance(mine, list) else [mine] if mine else []),
            *(extra if isinstance(extra, list) else [extra]),
        ]
    elif kind == "rrf":
        spec["retrievers"] = [_with_filter(r, extra) for r in spec.get("retrievers", [])]
    elif kind == "linear":
        spec["retrievers"] = [
            {**r, "retriever": _with_filter(r["retriever"], extra)} for r in spec.get("retrievers", [])
        ]
    return {kind: spec}


def _unwrap_reranker(body: dict[str, Any]) -> tuple[dict[str, Any], int, str] | None:
    """A body whose retriever is Elasticsearch's ``text_similarity_reranker``, rewritten for
    the cluster to run only its child (a ``standard`` child becomes a plain ``query``, which
    OpenSearch understands too), with the reranker's window and field; None otherwise."""
    retriever = body.get("retriever")
    spec = retriever.get("text_similarity_reranker") if isinstance(retriever, dict) else None
    if not isinstance(spec, dict):
        return None
    child, field = spec.get("retriever"), spec.get("field")
    window = spec.get("rank_window_size", RERANK_WINDOW)
    if not (isinstance(child, dict) and len(child) == 1 and isinstance(field, str)):
        return None
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 10_000:
        return None
    if spec.get("filter") is not None:
        child = _with_filter(child, spec["filter"])
    out = {k: v for k, v in body.items() if k != "retriever"}
    ((kind, inner),) = child.items()
    if kind == "standard" and isinstance(inner, dict) and set(inner) <= {"query", "filter", "min_score"}:
        query = inner.get("query", {"match_all": {}})
        if inner.get("filter") is not None:
            query = {"bool": {"must": [query], "filter": inner["filter"]}}
        out["query"] = query
        if inner.get("min_score") is not None:
            out["min_score"] = inner["min_score"]
    else:
        out["retriever"] = child
    return out, window, field


def _query_text(
    route: RouteConfig, body: Mapping[str, Any], params: Mapping[str, str], headers: Mapping[str, str]
) -> str | None:
    header = headers.get("x-rerank-query", "").strip()
    if header:
        return header
    ext = body.get("ext")
    rerank = ext.get("rerank") if isinstance(ext, dict) else None
    context = rerank.get("query_context") if isinstance(rerank, dict) else None
    if isinstance(context, dict):
        text = context.get("query_text")
        if isinstance(text, str) and text.strip():
            return text.strip()
        path = context.get("query_text_path")
        if isinstance(path, str):
            found = text_at_path(body, path)
            if found:
                return found
    if route.query_path:
        found = text_at_path(body, route.query_path)
        if found:
            return found
    if "q" in params:
        terms = lucene_terms(params["q"])
        return terms or None
    searched = {k: body[k] for k in ("query", "retriever", "knn", "sub_searches") if k in body}
    return find_query_text(searched, route.query_fields or route.fields)


def bypassed_query(
    route: RouteConfig, body: Any, params: Sequence[tuple[str, str]], headers: Mapping[str, str]
) -> str | None:
    """The query text of a search that goes through unchanged (sorted, scrolled, size 0, ...),
    for its event: what the TUI shows and its filter finds; None where none can be read."""
    if not isinstance(body, dict):
        return None
    return _query_text(route, body, dict(params), headers)


def plan_search(
    route: RouteConfig,
    body: Any,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
) -> SearchPlan | Bypass:
    """A plan for reranking, or the reason to pass the search through unchanged."""
    if headers.get("x-rerank", "").strip().lower() == "off":
        return Bypass(Reason.DISABLED_BY_HEADER)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return Bypass(Reason.UNPARSED_BODY)
    p = dict(params)
    asked = body  # the query text is read from the request as sent (a reranker's inference_text first)
    reranker = _unwrap_reranker(body)
    window, fields = (reranker[1], (reranker[2],)) if reranker else (None, None)
    if reranker is not None:
        body = reranker[0]  # what the cluster runs: the reranker's child
        route = overridden(route, window, fields)
    if "scroll" in p:
        return Bypass(Reason.SCROLL)
    for key, reason in (
        ("search_after", Reason.SEARCH_AFTER),
        ("pit", Reason.PIT),
        ("rescore", Reason.RESCORE),
    ):
        if body.get(key) is not None:
            return Bypass(reason)
    if "stored_fields" in body or "stored_fields" in p:
        return Bypass(Reason.STORED_FIELDS)
    if "filter_path" in p:
        return Bypass(Reason.FILTER_PATH)
    sort_param = p.get("sort")
    if (sort_param is not None and not _is_score_sort(sort_param.split(","))) or (
        body.get("sort") is not None and not _is_score_sort(body["sort"])
    ):
        return Bypass(Reason.SORT)
    size = _int(p["size"]) if "size" in p else _int(body.get("size", 10))
    from_ = _int(p["from"]) if "from" in p else _int(body.get("from", 0))
    if size is None or from_ is None or size < 0 or from_ < 0:
        return Bypass(Reason.UNPARSED_PAGING)
    if size == 0:
        return Bypass(Reason.SIZE_0)
    body_source = parse_body_source(body.get("_source"))
    if body_source is None:
        return Bypass(Reason.UNPARSED_SOURCE)
    source = parse_params_source(p, body_source)
    query = _query_text(route, asked, p, headers)
    if not query:
        return Bypass(Reason.KNN_NO_TEXT if has_knn(asked) else Reason.NO_QUERY_TEXT)

    # the widened body: what changes is at the top and in ext, so only those are copied (the
    # request's body stays as it came: a refused widened search is asked again as sent)
    wide = dict(body)
    ext = wide.get("ext")
    ubi = None
    if isinstance(ext, dict):
        ext = wide["ext"] = dict(ext)
        ubi = ext.pop("ubi", None)
        ubi = ubi if isinstance(ubi, dict) else {} if ubi is not None else None
        ext.pop("rerank", None)
        if not ext:
            del wide["ext"]
    wide["from"] = 0
    wide["size"] = route.window
    fetch = widened(source, tuple(route.fields))
    if fetch.is_identity:
        wide.pop("_source", None)
    else:
        wide["_source"] = to_body(fetch)
    upstream_params = tuple((k, v) for k, v in params if k not in _WIDENED_PARAMS)
    instruction = headers.get("x-rerank-instruction", "").strip() or route.instruction
    explain = headers.get("x-rerank-explain", "").strip().lower() in ("1", "true", "yes")
    return SearchPlan(
        route.name,
        query,
        from_,
        size,
        source,
        wide,
        upstream_params,
        instruction,
        explain,
        window=window,
        fields=fields,
        ubi=ubi,
    )
