"""The search interceptor: one pipeline for ``_search`` and every ``_msearch`` sub-search.

    snapshot -> prepare (pure: a plan, or the reason to pass it through) -> rewrite ->
    the widened cluster call -> finish (rerank, page, event)

Every search, and every sub-search, leaves one event; a search passed through leaves it at
the one bypass exit, ``_bypass``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sidecar.events.event import SearchEvent
from sidecar.proxy.asgi import BodyTooLarge, Receive, Scope, Send, read_body, send_response
from sidecar.proxy.forward import (
    forward,
    request_headers,
    response_headers,
    send_too_large,
    send_upstream_error,
    target,
)
from sidecar.proxy.headers import bypass_headers, experiment_headers, outcome_headers
from sidecar.proxy.request import (
    InflatedTooLarge,
    Unreadable,
    answers_in_json,
    content_type,
    decode_body,
    dumps,
    header,
    header_map,
    json_body,
    msearch_lines,
    pretty,
    rerank_headers,
    search_context,
)
from sidecar.runtime import Runtime
from sidecar.search import languages, record
from sidecar.search.outcome import Outcome, summarize
from sidecar.search.page import window_hits
from sidecar.search.pipeline import ClusterRefused, Upstream, finished
from sidecar.search.plan import Bypass, SearchPlan, plan_search
from sidecar.search.routes import split_indices
from sidecar.search.snapshot import CompiledRoute, Snapshot
from sidecar.search.variants import rewrite_plan
from sidecar.upstream import UpstreamError, UpstreamResponse
from sidecar.vocab import Reason

log = logging.getLogger(__name__)

_WIDENED_DROP = frozenset({b"content-length", b"content-encoding", b"accept-encoding", b"content-type"})
_RESPONSE_DROP = frozenset({b"content-length", b"content-encoding"})
_RETRY_DROP = frozenset({b"content-length"})
# what a cluster answers a request it will not take (too large a result window, a field it cannot
# return, too large a body): the widened request is asked again as the client sent it
WIDEN_REFUSED = frozenset({400, 413})


@dataclass
class _Search:
    """One (sub-)search on its way: its event and when it started."""

    rt: Runtime
    snap: Snapshot  # the config it is served by, from its start to its event
    event: SearchEvent
    started: float

    def record(self, outcome: Outcome) -> None:
        e = self.event
        e.status, e.reason, e.upstream_status = outcome.status, outcome.reason, outcome.upstream_status
        e.timings.total_ms = round((time.perf_counter() - self.started) * 1000, 2)
        e.cap(self.snap.config.events.max_text_chars)
        if self.snap.config.events.redact:
            e.redact()
        self.rt.events.add(e)
        self.rt.metrics.observe(e)


def prepare(
    route: CompiledRoute | None,
    scope: Scope,
    raw: bytes,
    params: list[tuple[str, str]],
    limit: int | None = None,
    max_depth: int = 100,
    max_query_chars: int = 10_000,
) -> SearchPlan | Bypass:
    """The plan of a search, or why it goes to the cluster unchanged (no I/O); InflatedTooLarge
    for a compressed body that inflates past ``limit``. What the sidecar cannot read goes to the
    cluster as it came, which answers for itself."""
    if route is None:
        return Bypass(Reason.NO_ROUTE)
    if not answers_in_json(scope, params):
        return Bypass(Reason.FORMAT)
    try:
        body = json_body(scope, raw, limit, max_depth)
    except Unreadable as e:
        return Bypass(e.reason)
    return safe_plan(route, body, params, rerank_headers(scope), max_query_chars)


def safe_plan(
    route: CompiledRoute,
    body: Any,
    params: list[tuple[str, str]],
    headers: dict[str, str],
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
    return plan


async def _bypass(
    search: _Search,
    reason: Reason,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    body: bytes | None = None,
    head: bytes = b"",
) -> None:
    """The one way out for a search passed through: its event, then the request as it came."""
    search.record(Outcome.bypass(reason))
    await forward(
        search.rt, scope, receive, send, body=body, head=head, extra_headers=bypass_headers(reason.value)
    )


def without_rerank_ext(body: Any) -> dict[str, Any] | None:
    """A search body the sidecar lets through after reading it, without ``ext.rerank`` (which
    only the sidecar reads); None when it has none."""
    ext = body.get("ext") if isinstance(body, dict) else None
    if not isinstance(ext, dict) or "rerank" not in ext:
        return None
    assert isinstance(body, dict)
    rest = {k: v for k, v in ext.items() if k != "rerank"}
    return {**{k: v for k, v in body.items() if k != "ext"}, **({"ext": rest} if rest else {})}


async def _pass_search(
    rt: Runtime,
    search: _Search,
    reason: Reason,
    scope: Scope,
    receive: Receive,
    send: Send,
    raw: bytes,
    max_depth: int,
) -> None:
    """A search of a route passed through: as it came, less ``ext.rerank`` (the sidecar's own,
    which the cluster refuses as an unknown ext) where the body carries it."""
    cleaned = None
    if raw and (header(scope, b"content-encoding") or b'"rerank"' in raw):  # else nothing to look for
        try:
            limit = search.snap.config.max_search_body_bytes
            cleaned = without_rerank_ext(json_body(scope, raw, limit, max_depth))
        except (Unreadable, InflatedTooLarge):
            cleaned = None  # what the sidecar cannot read goes as it came
    if cleaned is None:
        await _bypass(search, reason, scope, receive, send, body=raw)
    else:
        await _passed_cleaned(rt, search, reason, scope, send, dumps(cleaned))


async def _passed_cleaned(
    rt: Runtime, search: _Search, reason: Reason, scope: Scope, send: Send, body: bytes
) -> None:
    """A search passed through with its body rewritten (``without_rerank_ext``): the cluster's
    answer goes back as it came."""
    search.record(Outcome.bypass(reason))
    headers = request_headers(scope, _WIDENED_DROP)
    headers.append((b"content-type", content_type(scope, b"application/json")))
    fetched = await _fetch(rt, send, target(scope), headers, body)
    if fetched is None:
        return
    resp, content = fetched
    out = response_headers(resp, _RESPONSE_DROP) + bypass_headers(reason.value)
    await send_response(send, resp.status, out, content)


async def _body(search: _Search, snap: Snapshot, scope: Scope, receive: Receive, send: Send) -> bytes | None:
    """The whole body of a search, read under the snapshot's limit; past it the search goes to
    the cluster as it came, streamed on from what was read (None: answered)."""
    try:
        return await read_body(receive, snap.config.max_search_body_bytes)
    except BodyTooLarge as e:
        await _bypass(search, Reason.BODY_TOO_LARGE, scope, receive, send, head=e.head)
        return None


async def _inflated_too_large(search: _Search, send: Send, e: InflatedTooLarge) -> None:
    """A compressed body that inflates past the limit: a 413 in OpenSearch's shape (the cluster
    is not asked to inflate it either)."""
    search.record(Outcome.bypass(Reason.BODY_TOO_LARGE))
    await send_too_large(send, None, e.limit, str(e))


async def _cluster_answer(
    searches: list[_Search], send: Send, status: int, headers: list[tuple[bytes, bytes]], content: bytes
) -> None:
    """The cluster's own answer goes back as it came (not a search answer the sidecar can rerank),
    every search of the request recorded as passed through with its status."""
    outcome = Outcome.bypass(Reason.UPSTREAM_STATUS, status)
    for search in searches:
        search.record(outcome)
    await send_response(send, status, [*headers, *bypass_headers(outcome.reason_text)], content)


async def _rewritten(
    route: CompiledRoute, plan: SearchPlan, context: str | None, event: SearchEvent
) -> SearchPlan | Bypass:
    """The plan with its query's language and its variants (the language's own rules too);
    on a fault in rewriting, the plan as it was. A bypass (reason ``language``) when the
    route's model does not read the query, no variant is in a language it reads, and the
    route names no model for that language."""
    reads = route.model.reads
    plan = languages.detected(route.config, reads, plan)
    try:
        plan = await rewrite_plan(route.rewriter, route.llm, plan, context)
    except Exception:
        log.exception("query rewriting failed; searching with the original query only")
    decided = languages.decided(route.config, reads, plan)
    if isinstance(decided, Bypass):  # the event says which query, in which language
        event.query, event.language = plan.query, plan.language
    return decided


async def handle_search(rt: Runtime, scope: Scope, receive: Receive, send: Send, index: str | None) -> None:
    """``/_search`` and ``/{index}/_search``; every one leaves an event. The whole search is
    served by the config snapshot it started with."""
    with rt.lease() as snap:
        await _search(rt, snap, scope, receive, send, index)


async def _search(
    rt: Runtime, snap: Snapshot, scope: Scope, receive: Receive, send: Send, index: str | None
) -> None:
    search = _Search(rt, snap, record.new_event(index, rerank_headers(scope)), time.perf_counter())
    route = snap.match(split_indices(index))
    raw = b""
    if route is not None:
        search.event.route = route.name
        read = await _body(search, snap, scope, receive, send)
        if read is None:
            return
        raw = read
    params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    limit = snap.config.max_search_body_bytes
    try:
        limits = snap.config.limits
        plan = prepare(route, scope, raw, params, limit, limits.max_json_depth, limits.max_query_chars)
    except InflatedTooLarge as e:
        await _inflated_too_large(search, send, e)
        return
    if isinstance(plan, Bypass):
        if route is None:
            await _bypass(search, plan.reason, scope, receive, send)
        else:
            await _pass_search(rt, search, plan.reason, scope, receive, send, raw, limits.max_json_depth)
        return
    assert route is not None  # a plan is made for a route
    plan = await _rewritten(route, plan, search_context(scope), search.event)
    if isinstance(plan, Bypass):
        await _pass_search(rt, search, plan.reason, scope, receive, send, raw, limits.max_json_depth)
        return
    widened = dumps(plan.body)
    if len(widened) > limit:  # what the sidecar would send is bounded as what it takes is
        await _bypass(search, Reason.BODY_TOO_LARGE, scope, receive, send, body=raw)
        return

    headers = request_headers(scope, _WIDENED_DROP)
    headers.append((b"content-type", content_type(scope, b"application/json")))
    path = target(scope, urlencode(plan.params).encode())
    upstream_started = time.perf_counter()
    fetched = await _fetch(rt, send, path, headers, widened)
    search.event.timings.upstream_ms = round((time.perf_counter() - upstream_started) * 1000, 2)
    if fetched is None:  # the client got a 502/504 in OpenSearch's shape
        search.record(Outcome.bypass(Reason.UPSTREAM_UNAVAILABLE))
        return
    resp, content = fetched
    if resp.status in WIDEN_REFUSED:  # the cluster refused what the sidecar added: ask as the client did
        fetched = await _fetch(rt, send, target(scope), request_headers(scope, _RETRY_DROP), raw)
        if fetched is None:
            search.record(Outcome.bypass(Reason.UPSTREAM_UNAVAILABLE))
            return
        resp, content = fetched
        ok = 200 <= resp.status < 300
        outcome = (
            Outcome.fallback(Reason.WIDEN_REFUSED)
            if ok
            else Outcome.bypass(Reason.UPSTREAM_STATUS, resp.status)
        )
        search.record(outcome)
        await send_response(
            send, resp.status, response_headers(resp, _RESPONSE_DROP) + outcome_headers(outcome), content
        )
        return
    parsed = _json_response(resp, content)
    if parsed is None or window_hits(parsed) is None:  # the cluster's own answer goes back
        await _cluster_answer([search], send, resp.status, response_headers(resp, _RESPONSE_DROP), content)
        return

    who = header_map(scope) if route.lab is not None else None  # where an experiment finds the user
    try:
        cluster = _SearchUpstream(rt, path, headers)
        page, outcome = await finished(route, plan, parsed, search.event, cluster, who)
    except ClusterRefused as refused:  # the page past the window: the cluster's own error goes back
        await _cluster_answer([search], send, refused.status, list(refused.headers), refused.raw)
        return
    search.record(outcome)
    out_headers = response_headers(resp, _RESPONSE_DROP) + outcome_headers(outcome)
    out_headers.append((b"x-rerank-event", search.event.id.encode()))
    out_headers.extend(experiment_headers(search.event))
    await send_response(send, resp.status, out_headers, dumps(page, pretty(params)))


@dataclass(frozen=True)
class _SearchUpstream:
    """The cluster as the core of one ``_search`` reaches it: the same path and headers as the
    widened request; a 4xx is the client's (its page past the cluster's result window)."""

    rt: Runtime
    path: bytes
    headers: list[tuple[bytes, bytes]]

    async def hits(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The hits of ``body``, None when the cluster gives none."""
        try:
            more, raw = await _call(self.rt, self.path, self.headers, dumps(body))
        except UpstreamError:
            return None
        if 400 <= more.status < 500:
            raise ClusterRefused(more.status, None, response_headers(more, _RESPONSE_DROP), raw)
        return window_hits(_json_response(more, raw))


@dataclass(frozen=True)
class _SubUpstream:
    """The cluster as the core of one ``_msearch`` line reaches it: a one-line ``_msearch``
    under that line's header; an error item of a 4xx is the client's."""

    rt: Runtime
    path: bytes
    headers: list[tuple[bytes, bytes]]
    header: Any

    async def hits(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The hits of ``body``, None when the cluster gives none."""
        try:
            lines = dumps(self.header) + b"\n" + dumps(body) + b"\n"
            more, raw = await _call(self.rt, self.path, self.headers, lines)
        except UpstreamError:
            return None
        answers = _answers(_json_response(more, raw), 1)
        if answers is not None and isinstance(answers[0], dict) and "error" in answers[0]:
            status = answers[0].get("status", 400)
            if isinstance(status, int) and 400 <= status < 500:
                raise ClusterRefused(status, answers[0])
        return window_hits(answers[0]) if answers is not None else None


async def _call(
    rt: Runtime, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[UpstreamResponse, bytes]:
    """POST to the cluster and read the whole answer (UpstreamError when there is none)."""
    resp = await rt.upstream.request("POST", path, headers, body)
    try:
        return resp, await resp.read()
    finally:
        resp.release()


async def _fetch(
    rt: Runtime, send: Send, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[UpstreamResponse, bytes] | None:
    """``_call``; on an upstream failure answer the client and return None."""
    try:
        return await _call(rt, path, headers, body)
    except UpstreamError as e:
        await send_upstream_error(send, e)
        return None


_OFF_LOOP = 1024 * 1024  # answers past this size are parsed and written on a worker thread


async def _json_response_off_loop(resp: UpstreamResponse, content: bytes) -> Any:
    """``_json_response``; a large answer parsed off the event loop, which other requests share."""
    if len(content) > _OFF_LOOP:
        return await asyncio.to_thread(_json_response, resp, content)
    return _json_response(resp, content)


def _json_response(resp: UpstreamResponse, content: bytes) -> Any:
    """A 200 JSON body, parsed; None for anything else."""
    ctype = next((v for k, v in resp.headers if k.lower() == b"content-type"), b"")
    if resp.status != 200 or b"json" not in ctype:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def _answers(doc: Any, n: int) -> list[Any] | None:
    """The ``responses`` of an ``_msearch`` answer, when it has one per sub-search asked."""
    responses = doc.get("responses") if isinstance(doc, dict) else None
    return responses if isinstance(responses, list) and len(responses) == n else None


@dataclass(frozen=True)
class _Sub:
    """One sub-search of an ``_msearch``: its lines, its route, its plan (or bypass), its event."""

    header: Any
    body: Any
    route: CompiledRoute | None
    plan: SearchPlan | Bypass
    search: _Search


def _plan_sub(
    rt: Runtime,
    snap: Snapshot,
    header: Any,
    body: Any,
    default_index: str | None,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    capped: bool = False,
    max_query_chars: int = 10_000,
) -> _Sub:
    """One sub-search's plan; ``capped``: the request has had its share of reranked ones."""
    index = header.get("index", default_index) if isinstance(header, dict) else default_index
    if not isinstance(index, (str, list)) or (
        isinstance(index, list) and not all(isinstance(i, str) for i in index)
    ):
        index, header = default_index, None  # {"index": 5}: the cluster's to refuse
    search = _Search(rt, snap, record.new_event(",".join(split_indices(index)), headers), time.perf_counter())
    if not isinstance(header, dict):
        return _Sub(header, body, None, Bypass(Reason.UNPARSED_HEADER), search)
    route = snap.match(split_indices(index))
    if route is None:
        return _Sub(header, body, None, Bypass(Reason.NO_ROUTE), search)
    search.event.route = route.name
    if capped:
        return _Sub(header, body, route, Bypass(Reason.MSEARCH_CAP), search)
    return _Sub(header, body, route, safe_plan(route, body, params, headers, max_query_chars), search)


async def handle_msearch(rt: Runtime, scope: Scope, receive: Receive, send: Send, index: str | None) -> None:
    """``/_msearch`` and ``/{index}/_msearch``: each sub-search through the same steps as a
    search, all of them served by the config snapshot the request started with."""
    with rt.lease() as snap:
        await _msearch(rt, snap, scope, receive, send, index)


async def _msearch(
    rt: Runtime, snap: Snapshot, scope: Scope, receive: Receive, send: Send, index: str | None
) -> None:
    headers = rerank_headers(scope)
    whole = _Search(rt, snap, record.new_event(",".join(split_indices(index)), headers), time.perf_counter())
    raw = await _body(whole, snap, scope, receive, send)
    if raw is None:
        return
    params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    if not answers_in_json(scope, params):
        await _bypass(whole, Reason.FORMAT, scope, receive, send, body=raw)
        return
    limits = snap.config.limits
    try:
        plain = decode_body(scope, raw, snap.config.max_search_body_bytes) if raw else b""
    except InflatedTooLarge as e:
        await _inflated_too_large(whole, send, e)
        return
    pairs = msearch_lines(plain, limits.max_json_depth) if plain is not None else None
    if not pairs:
        await _bypass(whole, Reason.UNPARSED_BODY, scope, receive, send, body=raw)
        return
    subs = []
    planned = 0
    for i, (h, b) in enumerate(pairs):
        capped = planned >= limits.max_reranked_subsearches
        sub = _plan_sub(rt, snap, h, b, index, params, headers, capped, limits.max_query_chars)
        planned += isinstance(sub.plan, SearchPlan)
        subs.append(sub)
        if i % 64 == 63:
            await asyncio.sleep(0)  # a thousand sub-searches do not hold the loop for the rest
    cleaned = [without_rerank_ext(s.body) if isinstance(s.plan, Bypass) else None for s in subs]
    subs = [s if c is None else replace(s, body=c) for s, c in zip(subs, cleaned, strict=True)]
    if not any(isinstance(s.plan, SearchPlan) for s in subs) and not any(cleaned):
        for s in subs:
            assert isinstance(s.plan, Bypass)
            s.search.record(Outcome.bypass(s.plan.reason))
        reasons = ",".join(s.plan.reason.value for s in subs if isinstance(s.plan, Bypass))
        await forward(rt, scope, receive, send, body=raw, extra_headers=bypass_headers(reasons))
        return
    context = search_context(scope)

    async def rewritten(sub: _Sub) -> _Sub:
        if isinstance(sub.plan, SearchPlan) and sub.route is not None:
            plan = await _rewritten(sub.route, sub.plan, context, sub.search.event)
            if isinstance(plan, Bypass):  # the sub-search goes as it came, less ext.rerank
                return replace(sub, plan=plan, body=without_rerank_ext(sub.body) or sub.body)
            return replace(sub, plan=plan)
        return sub

    subs = list(await asyncio.gather(*(rewritten(s) for s in subs)))
    lines: list[bytes] = []
    for s in subs:
        lines.append(dumps(s.header))
        lines.append(dumps(s.plan.body if isinstance(s.plan, SearchPlan) else s.body))
    upstream = request_headers(scope, _WIDENED_DROP)
    upstream.append((b"content-type", content_type(scope, b"application/x-ndjson")))
    path = target(scope)
    fetched = await _fetch(rt, send, path, upstream, b"\n".join(lines) + b"\n")
    if fetched is None:
        for s in subs:
            s.search.record(Outcome.bypass(Reason.UPSTREAM_UNAVAILABLE))
        return
    resp, content = fetched
    doc = await _json_response_off_loop(resp, content)
    responses = _answers(doc, len(subs))
    if responses is None:
        searches = [s.search for s in subs]
        await _cluster_answer(searches, send, resp.status, response_headers(resp, _RESPONSE_DROP), content)
        return
    refused = await _ask_again(rt, path, upstream, subs, responses)

    every = header_map(scope) if any(s.route is not None and s.route.lab is not None for s in subs) else None
    outcomes = await asyncio.gather(
        *(
            _finish_sub(s, responses, i, i in refused, _SubUpstream(rt, path, upstream, s.header), every)
            for i, s in enumerate(subs)
        )
    )
    per_sub = ",".join(
        o.status.value if not o.reason_text else f"{o.status.value}:{o.reason_text}" for o in outcomes
    )
    out_headers = response_headers(resp, _RESPONSE_DROP) + outcome_headers(summarize(list(outcomes)))
    out_headers.append((b"x-rerank-msearch", per_sub.encode()))
    body = (
        await asyncio.to_thread(dumps, doc, pretty(params))
        if len(content) > _OFF_LOOP
        else dumps(doc, pretty(params))
    )
    await send_response(send, resp.status, out_headers, body)


async def _ask_again(
    rt: Runtime, path: bytes, headers: list[tuple[bytes, bytes]], subs: list[_Sub], responses: list[Any]
) -> set[int]:
    """Sub-searches whose widened request the cluster refused (400, 413) are asked again, in one
    ``_msearch``, as the client sent them; their answers replace the refusals. Returns their
    positions (none when the second call fails: the refusals stay)."""
    refused = [
        i
        for i, (s, r) in enumerate(zip(subs, responses, strict=True))
        if isinstance(s.plan, SearchPlan) and isinstance(r, dict) and r.get("status") in WIDEN_REFUSED
    ]
    if not refused:
        return set()
    body = b"".join(dumps(subs[i].header) + b"\n" + dumps(subs[i].body) + b"\n" for i in refused)
    try:
        resp, content = await _call(rt, path, headers, body)
    except UpstreamError:
        return set()
    again = _answers(_json_response(resp, content), len(refused))
    if again is None:
        return set()
    for i, answer in zip(refused, again, strict=True):
        responses[i] = answer
    return set(refused)


async def _finish_sub(
    sub: _Sub,
    responses: list[Any],
    i: int,
    asked_again: bool = False,
    cluster: Upstream | None = None,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """Rerank one sub-search's answer in place; its event recorded."""
    response = responses[i]
    answered = isinstance(response, dict) and response.get("status", 200) == 200
    if isinstance(sub.plan, Bypass):
        outcome = Outcome.bypass(sub.plan.reason)
    elif asked_again:
        outcome = (
            Outcome.fallback(Reason.WIDEN_REFUSED) if answered else Outcome.bypass(Reason.UPSTREAM_ERROR)
        )
    elif not answered or window_hits(response) is None:
        outcome = Outcome.bypass(Reason.UPSTREAM_ERROR)
    else:
        assert sub.route is not None  # a plan is made for a route
        try:
            responses[i], outcome = await finished(
                sub.route, sub.plan, response, sub.search.event, cluster, headers
            )
        except ClusterRefused as refused:  # its page past the window: the cluster's error item
            responses[i] = refused.answer
            outcome = Outcome.bypass(Reason.UPSTREAM_ERROR)
    sub.search.record(outcome)
    return outcome
