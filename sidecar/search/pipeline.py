"""The pipeline of one search, ``_search`` or a line of an ``_msearch``, without HTTP:

    planned:  plan (pure) -> language -> rewrite -> the model that reads it, or why not
    run:      retrieve (the widened search, through the Upstream it is given) -> rerank
              (sidecar/search/rerank.py: score -> decide -> serve -> page) -> a Result

An adapter (sidecar/proxy/intercept.py) reads the request off the wire, hands it here, and
writes the Result back; the cluster's own answer goes back as it came where the core does not
rerank it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sidecar.events.event import SearchEvent
from sidecar.search import languages
from sidecar.search.cluster import WIDEN_REFUSED, Answer, ClusterRefused, Upstream
from sidecar.search.outcome import Outcome
from sidecar.search.plan import Bypass, SearchPlan, bypassed_query, plan_search
from sidecar.search.rerank import finish
from sidecar.search.snapshot import CompiledRoute
from sidecar.search.variants import rewrite_plan
from sidecar.vocab import Reason

log = logging.getLogger(__name__)


def safe_plan(
    route: CompiledRoute,
    body: Any,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    max_query_chars: int = 10_000,
) -> SearchPlan | Bypass:
    """``plan_search``, passing through a body of a shape the planner cannot take (a client's
    mistake is the cluster's to answer, never a sidecar error) and a query text too long to
    rerank."""
    try:
        plan = plan_search(route.config, body, params, headers)
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        log.debug("a search body the planner cannot read goes through as it came: %r", e)
        return Bypass(Reason.UNPARSED_BODY)
    if isinstance(plan, SearchPlan) and len(plan.query) > max_query_chars:
        return Bypass(Reason.QUERY_TOO_LONG)
    if isinstance(plan, Bypass) and plan.query is None:  # what the event shows of it
        try:
            query = bypassed_query(route.config, body, params, headers)
        except (RecursionError, ValueError, TypeError, KeyError, AttributeError, IndexError):
            query = None
        if query:
            return replace(plan, query=query[:max_query_chars])
    return plan


async def rewritten(route: CompiledRoute, plan: SearchPlan, context: str | None) -> SearchPlan | Bypass:
    """The plan with its query's language and its variants (the language's own rules too);
    on a fault in rewriting, the plan as it was. A bypass (reason ``language``, with the query
    and its language) when the route's model does not read the query, no variant is in a
    language it reads, and the route names no model for that language."""
    reads = route.model.reads
    plan = languages.detected(route.config, reads, plan)
    try:
        plan = await rewrite_plan(route.rewriter, route.llm, plan, context)
    except Exception:
        log.exception("query rewriting failed; searching with the original query only")
    decided = languages.decided(route.config, reads, plan)
    if isinstance(decided, Bypass):
        return replace(decided, query=plan.query, language=plan.language)
    return decided


@dataclass(frozen=True)
class Result:
    """How one search ends: the cluster's ``answer`` (None: it gave none, and the client was
    told) and, when the core reranked it, the ``page`` that goes back in its place."""

    outcome: Outcome
    page: dict[str, Any] | None = None
    answer: Answer | None = None


async def run(
    compiled: CompiledRoute,
    plan: SearchPlan,
    event: SearchEvent,
    upstream: Upstream,
    headers: Mapping[str, str] | None = None,
) -> Result:
    """The widened search, reranked; the cluster's own answer where it is not a window to
    rerank. A widened request the cluster refuses (400, 413: too large a window, a field it
    cannot return) is asked again as the client sent it, and that answer goes back."""
    answer = await upstream.search(plan)
    if answer is None:
        return Result(Outcome.bypass(Reason.UPSTREAM_UNAVAILABLE))
    event.timings.upstream_ms = answer.took_ms
    if answer.status in WIDEN_REFUSED:
        again = await upstream.as_sent()
        if again is None:
            return Result(Outcome.bypass(Reason.UPSTREAM_UNAVAILABLE))
        return Result(Outcome.fallback(Reason.WIDEN_REFUSED) if again.ok else again.passed(), answer=again)
    if answer.window is None:
        return Result(answer.passed(), answer=answer)
    try:
        page, outcome = await finish(compiled, plan, answer.doc, event, upstream, headers)
    except ClusterRefused as refused:  # the page past the window: the cluster's own error goes back
        return Result(refused.answer.passed(), answer=refused.answer)
    return Result(outcome, page=page, answer=answer)
