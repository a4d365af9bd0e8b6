"""The search adapter: ``_search`` and ``_msearch`` over HTTP, the core (sidecar/search/
pipeline.py) between reading and writing.

    read once (Incoming, the body under the snapshot's limits) -> the core's plan ->
    the core's run, through an Upstream of this module (one widened request, or one
    ``_msearch`` for every line) -> the Result written back

Every search, and every sub-search, leaves one event; a search passed through leaves by the
one exit, ``_pass`` (a route's search less ``ext.rerank``), from the ``_Pass`` that the
adapter's steps return.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from sidecar import jsontext, tracing
from sidecar.events.event import SearchEvent
from sidecar.logs import current_search
from sidecar.proxy.asgi import BodyTooLarge, Receive, Scope, Send, read_body, send_response
from sidecar.proxy.forward import (
    forward,
    request_headers,
    response_headers,
    send_too_large,
    send_upstream_error,
)
from sidecar.proxy.headers import bypass_headers, experiment_headers, outcome_headers
from sidecar.proxy.request import (
    Incoming,
    InflatedTooLarge,
    Unreadable,
    dumps,
    incoming,
    msearch_lines,
)
from sidecar.runtime import Runtime
from sidecar.search import record
from sidecar.search.cluster import WIDEN_REFUSED, Answer, ClusterRefused
from sidecar.search.outcome import Outcome, summarize
from sidecar.search.page import window_hits
from sidecar.search.pipeline import Result, rewritten, run, safe_plan
from sidecar.search.plan import Bypass, SearchPlan
from sidecar.search.routes import split_indices
from sidecar.search.snapshot import CompiledRoute, Snapshot
from sidecar.upstream import UpstreamError, UpstreamResponse
from sidecar.vocab import Reason

_RESPONSE_DROP = frozenset({b"content-length", b"content-encoding"})


@dataclass
class _Search:
    """One (sub-)search on its way: its event, the snapshot that serves it, when it started."""

    rt: Runtime
    snap: Snapshot  # the config it is served by, from its start to its event
    event: SearchEvent
    started: float

    def record(self, outcome: Outcome, bypass: Bypass | None = None) -> None:
        """Its event, ended by the outcome (and what a bypass says of the query), kept."""
        e = self.event
        if bypass is not None and bypass.query is not None:
            e.query, e.language = bypass.query, bypass.language
        e.status, e.reason, e.upstream_status = outcome.status, outcome.reason, outcome.upstream_status
        e.timings.total_ms = round((time.perf_counter() - self.started) * 1000, 2)
        e.cap(self.snap.config.events.max_text_chars)
        if self.snap.config.events.redact:
            e.redact()
        self.rt.services.events.add(e)
        self.rt.services.metrics.observe(e)


def _started(rt: Runtime, snap: Snapshot, index: str | None, req: Incoming) -> _Search:
    return _Search(rt, snap, record.new_event(index, req.rerank), time.perf_counter())


def without_rerank_ext(body: Any) -> dict[str, Any] | None:
    """A search body the sidecar lets through after reading it, without ``ext.rerank`` (which
    only the sidecar reads); None when it has none."""
    ext = body.get("ext") if isinstance(body, dict) else None
    if not isinstance(ext, dict) or "rerank" not in ext:
        return None
    assert isinstance(body, dict)
    rest = {k: v for k, v in ext.items() if k != "rerank"}
    return {**{k: v for k, v in body.items() if k != "ext"}, **({"ext": rest} if rest else {})}


@dataclass(frozen=True)
class _Pass:
    """A request the cluster answers as it came, and why: what of its body was read (``body``
    whole, or ``head`` before a limit stopped the reading: the rest streams on), whether it is
    a route's search (sent less ``ext.rerank``), what its bypass says of the query."""

    reason: Reason
    body: bytes | None = None
    head: bytes = b""
    routed: bool = False
    bypass: Bypass | None = None
    header: str | None = None  # X-Rerank-Reason when it is not the reason's (an _msearch's lines)
    recorded: bool = False  # its events are kept already (an _msearch's lines)


async def _pass(search: _Search, p: _Pass, req: Incoming, scope: Scope, receive: Receive, send: Send) -> None:
    """The one way out for a search passed through: its event, then the request as it came
    (a route's search less ``ext.rerank``, the sidecar's own, which the cluster refuses as an
    unknown ext, where the body carries it)."""
    if not p.recorded:
        search.record(Outcome.bypass(p.reason), p.bypass)
    extra = bypass_headers(p.header or p.reason.value)
    cleaned = _cleaned(search.snap, req, p.body) if p.routed and p.body else None
    if cleaned is None:
        limit = search.snap.config.max_request_body_bytes
        await forward(
            search.rt, scope, receive, send, body=p.body, head=p.head, extra_headers=extra, limit=limit
        )
        return
    fetched = await _fetch(search.rt, send, req.target(), req.widened_headers(b"application/json"), cleaned)
    if fetched is not None:
        resp, content = fetched
        await send_response(send, resp.status, response_headers(resp, _RESPONSE_DROP) + extra, content)


def _cleaned(snap: Snapshot, req: Incoming, raw: bytes) -> bytes | None:
    """The body less ``ext.rerank``; None when it has none, or cannot be read (it goes as it came)."""
    if not (req.encoding or b'"rerank"' in raw):  # nothing to look for
        return None
    try:
        body = req.json_body(raw, snap.config.max_search_body_bytes, snap.config.limits.max_json_depth)
    except (Unreadable, InflatedTooLarge):
        return None
    cleaned = without_rerank_ext(body)
    return None if cleaned is None else dumps(cleaned)


async def _inflated_too_large(search: _Search, send: Send, e: InflatedTooLarge) -> None:
    """A compressed body that inflates past the limit: a 413 in OpenSearch's shape (the cluster
    is not asked to inflate it either)."""
    search.record(Outcome.bypass(Reason.BODY_TOO_LARGE))
    await send_too_large(send, None, e.limit, str(e))


def _plan(route: CompiledRoute, req: Incoming, raw: bytes, snap: Snapshot) -> SearchPlan | Bypass:
    """The plan of a routed search, or why it goes to the cluster unchanged (no I/O);
    InflatedTooLarge for a compressed body that inflates past the limit. What the sidecar
    cannot read goes to the cluster as it came, which answers for itself."""
    if not req.json:
        return Bypass(Reason.FORMAT)
    limits = snap.config.limits
    try:
        body = req.json_body(raw, snap.config.max_search_body_bytes, limits.max_json_depth)
    except Unreadable as e:
        return Bypass(e.reason)
    return safe_plan(route, body, req.params, req.rerank, limits.max_query_chars)


async def handle(
    rt: Runtime, scope: Scope, receive: Receive, send: Send, index: str | None, multi: bool = False
) -> None:
    """``/_search`` and ``/{index}/_search`` (``multi``: ``_msearch``, each sub-search through
    the same steps); every search leaves an event, and the whole request is served by the config
    snapshot it started with."""
    with rt.lease() as snap:
        if multi:
            await _msearch(rt, snap, scope, receive, send, index)
        else:
            await _search(rt, snap, scope, receive, send, index)


async def _search(
    rt: Runtime, snap: Snapshot, scope: Scope, receive: Receive, send: Send, index: str | None
) -> None:
    req = incoming(scope, request_headers(scope))
    search = _started(rt, snap, index, req)
    current_search.set(search.event)  # what a log line written for it names (log_format: json)
    passed = await _searched(search, snap.match(split_indices(index)), req, receive, send)
    if passed is not None:
        await _pass(search, passed, req, scope, receive, send)


async def _searched(
    search: _Search, route: CompiledRoute | None, req: Incoming, receive: Receive, send: Send
) -> _Pass | None:
    """One search through the core, answered; or why the cluster answers it as it came."""
    if route is None:
        return _Pass(Reason.NO_ROUTE)
    snap = search.snap
    search.event.route = route.name
    try:
        raw = await read_body(receive, snap.config.max_search_body_bytes)
    except BodyTooLarge as e:
        return _Pass(Reason.BODY_TOO_LARGE, head=e.head)
    try:
        with tracing.span("plan"):
            plan = _plan(route, req, raw, snap)
    except InflatedTooLarge as e:
        await _inflated_too_large(search, send, e)
        return None
    if isinstance(plan, SearchPlan):
        with tracing.span("rewrite"):
            plan = await rewritten(route, plan, req.context)
    if isinstance(plan, Bypass):
        return _Pass(plan.reason, raw, routed=True, bypass=plan)
    widened = dumps(plan.body)
    if len(widened) > snap.config.max_search_body_bytes:  # bounded as what it takes is
        return _Pass(Reason.BODY_TOO_LARGE, raw)
    cluster = _Cluster(search.rt, send, req, raw, req.target(urlencode(plan.params).encode()), widened)
    who = req.everyone if route.lab is not None else None  # where an experiment finds the user
    result = await run(route, plan, search.event, cluster, who)
    search.record(result.outcome)
    if tracing.on():
        tracing.annotate(_traced(search.event, snap.config.events.redact))
    with tracing.span("response"):
        await _answer(send, search.event, req, result)
    return None


def _traced(event: SearchEvent, redact: bool) -> dict[str, Any]:
    """What a search's span says of it: its route, outcome and model, its query unless the
    events are redacted (nor are the documents' texts ever on a span)."""
    return {
        "rerank.route": event.route,
        "rerank.status": event.status,
        "rerank.reason": event.reason,
        "rerank.model": event.model,
        "rerank.event": event.id,
        "rerank.window": event.window,
        "rerank.query": None if redact else event.query,
    }


async def _answer(send: Send, event: SearchEvent, req: Incoming, result: Result) -> None:
    """The Result of one search, written back: the reranked page under the cluster's headers,
    or the cluster's answer as it came, with the ``X-Rerank*`` headers of its outcome."""
    answer = result.answer
    if answer is None:  # the client got a 502/504 in OpenSearch's shape
        return
    status, headers, content = answer.wire
    out = [*headers, *outcome_headers(result.outcome)]
    if result.page is None:
        await send_response(send, status, out, content)
        return
    out.append((b"x-rerank-event", event.id.encode()))
    out.extend(experiment_headers(event))
    await send_response(send, status, out, dumps(result.page, req.pretty))


@dataclass(frozen=True)
class _Cluster:
    """The cluster as the core of one ``_search`` reaches it: the widened request (``path`` and
    ``widened``, made from the plan and checked against the limit by the adapter), the request
    as the client sent it, and the page past the window under the widened request's path and
    headers (a 4xx there is the client's: its page past the cluster's result window)."""

    rt: Runtime
    send: Send
    req: Incoming
    raw: bytes
    path: bytes
    widened: bytes

    async def search(self, plan: SearchPlan) -> Answer | None:
        """The widened search of the plan; None when the cluster gave no answer (the client was told)."""
        started = time.perf_counter()
        headers = self.req.widened_headers(b"application/json")
        fetched = await _fetch(self.rt, self.send, self.path, headers, self.widened)
        took = round((time.perf_counter() - started) * 1000, 2)
        return None if fetched is None else _whole(*fetched, took_ms=took)

    async def as_sent(self) -> Answer | None:
        """The search as the client sent it."""
        fetched = await _fetch(self.rt, self.send, self.req.target(), self.req.forwarded, self.raw)
        return None if fetched is None else _whole(*fetched, parse=False)

    async def hits(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The hits of ``body``, None when the cluster gives none."""
        headers = self.req.widened_headers(b"application/json")
        try:
            more, raw = await _call(self.rt, self.path, headers, dumps(body))
        except UpstreamError:
            return None
        if 400 <= more.status < 500:
            raise ClusterRefused(_whole(more, raw, parse=False))
        return window_hits(_json_response(more, raw))


def _whole(
    resp: UpstreamResponse, content: bytes, took_ms: float | None = None, parse: bool = True
) -> Answer:
    """A whole answer of the cluster, with what it takes to send it back as it came."""
    wire = (resp.status, response_headers(resp, _RESPONSE_DROP), content)
    doc = _json_response(resp, content) if parse else None
    return Answer(resp.status, doc, wire=wire, took_ms=took_ms)


async def _call(
    rt: Runtime, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[UpstreamResponse, bytes]:
    """POST to the cluster and read the whole answer (UpstreamError when there is none)."""
    with tracing.span("cluster POST", None, client=True):
        resp = await rt.services.upstream.request("POST", path, tracing.injected(headers), body)
        try:
            return resp, await resp.read()
        finally:
            resp.release()
            if tracing.on():
                tracing.annotate({"http.response.status_code": resp.status}, error=resp.status >= 500)


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
        return jsontext.loads(content)
    except (ValueError, RecursionError):
        return None


def _answers(doc: Any, n: int) -> list[Any] | None:
    """The ``responses`` of an ``_msearch`` answer, when it has one per sub-search asked."""
    responses = doc.get("responses") if isinstance(doc, dict) else None
    return responses if isinstance(responses, list) and len(responses) == n else None


def _item(answer: Any) -> Answer:
    """One item of an ``_msearch`` answer (it is its own wire form)."""
    status = answer.get("status", 200) if isinstance(answer, dict) else 0
    if not isinstance(status, int) or isinstance(status, bool):
        status = 0
    return Answer(status, answer if isinstance(answer, dict) else None, item=True, wire=answer)


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
    req: Incoming,
    capped: bool = False,
) -> _Sub:
    """One sub-search's plan; ``capped``: the request has had its share of reranked ones."""
    index = header.get("index", default_index) if isinstance(header, dict) else default_index
    if not isinstance(index, (str, list)) or (
        isinstance(index, list) and not all(isinstance(i, str) for i in index)
    ):
        index, header = default_index, None  # {"index": 5}: the cluster's to refuse
    search = _started(rt, snap, ",".join(split_indices(index)), req)
    if not isinstance(header, dict):
        return _Sub(header, body, None, Bypass(Reason.UNPARSED_HEADER), search)
    route = snap.match(split_indices(index))
    if route is None:
        return _Sub(header, body, None, Bypass(Reason.NO_ROUTE), search)
    search.event.route = route.name
    if capped:
        return _Sub(header, body, route, Bypass(Reason.MSEARCH_CAP), search)
    plan = safe_plan(route, body, req.params, req.rerank, snap.config.limits.max_query_chars)
    return _Sub(header, body, route, plan, search)


async def _msearch(
    rt: Runtime, snap: Snapshot, scope: Scope, receive: Receive, send: Send, index: str | None
) -> None:
    req = incoming(scope, request_headers(scope))
    whole = _started(rt, snap, ",".join(split_indices(index)), req)
    passed = await _msearched(whole, index, req, receive, send)
    if passed is not None:
        await _pass(whole, passed, req, scope, receive, send)


async def _msearched(
    whole: _Search, index: str | None, req: Incoming, receive: Receive, send: Send
) -> _Pass | None:
    """An ``_msearch``, each line through the core, answered; or why the cluster answers it as
    it came."""
    rt, snap = whole.rt, whole.snap
    try:
        raw = await read_body(receive, snap.config.max_search_body_bytes)
    except BodyTooLarge as e:
        return _Pass(Reason.BODY_TOO_LARGE, head=e.head)
    if not req.json:
        return _Pass(Reason.FORMAT, raw)
    limits = snap.config.limits
    try:
        plain = req.decoded(raw, snap.config.max_search_body_bytes) if raw else b""
    except InflatedTooLarge as e:
        await _inflated_too_large(whole, send, e)
        return None
    pairs = msearch_lines(plain, limits.max_json_depth) if plain is not None else None
    if not pairs:
        return _Pass(Reason.UNPARSED_BODY, raw)
    subs = []
    planned = 0
    for i, (h, b) in enumerate(pairs):
        sub = _plan_sub(rt, snap, h, b, index, req, planned >= limits.max_reranked_subsearches)
        planned += isinstance(sub.plan, SearchPlan)
        subs.append(sub)
        if i % 64 == 63:
            await asyncio.sleep(0)  # a thousand sub-searches do not hold the loop for the rest

    async def rewrite(sub: _Sub) -> _Sub:
        if isinstance(sub.plan, SearchPlan) and sub.route is not None:
            return replace(sub, plan=await rewritten(sub.route, sub.plan, req.context))
        return sub

    subs = list(await asyncio.gather(*(rewrite(s) for s in subs)))
    # a sub-search passed through goes as it came, less ext.rerank (which the cluster refuses)
    cleaned = [without_rerank_ext(s.body) if isinstance(s.plan, Bypass) else None for s in subs]
    subs = [s if c is None else replace(s, body=c) for s, c in zip(subs, cleaned, strict=True)]
    if not any(isinstance(s.plan, SearchPlan) for s in subs) and not any(cleaned):
        reasons = []
        for s in subs:
            assert isinstance(s.plan, Bypass)
            s.search.record(Outcome.bypass(s.plan.reason), s.plan)
            reasons.append(s.plan.reason.value)
        return _Pass(Reason.NONE, raw, header=",".join(reasons), recorded=True)
    lines: list[bytes] = []
    for s in subs:
        lines.append(dumps(s.header))
        lines.append(dumps(s.plan.body if isinstance(s.plan, SearchPlan) else s.body))
    upstream = req.widened_headers(b"application/x-ndjson")
    path = req.target()
    fetched = await _fetch(rt, send, path, upstream, b"\n".join(lines) + b"\n")
    if fetched is None:
        for s in subs:
            s.search.record(Outcome.bypass(Reason.UPSTREAM_UNAVAILABLE), _bypass_of(s.plan))
        return None
    resp, content = fetched
    doc = await _json_response_off_loop(resp, content)
    responses = _answers(doc, len(subs))
    if responses is None:  # the cluster's own answer goes back
        outcome = Outcome.bypass(Reason.UPSTREAM_STATUS, resp.status)
        for s in subs:
            s.search.record(outcome, _bypass_of(s.plan))
        out = response_headers(resp, _RESPONSE_DROP) + outcome_headers(outcome)
        await send_response(send, resp.status, out, content)
        return None
    again = await _ask_again(rt, path, upstream, subs, responses)
    everyone = req.everyone if any(s.route is not None and s.route.lab is not None for s in subs) else None
    outcomes = await asyncio.gather(
        *(
            _finish_sub(s, responses, i, _SubCluster(rt, path, upstream, s.header, r, again.get(i)), everyone)
            for i, (s, r) in enumerate(zip(subs, responses, strict=True))
        )
    )
    per_sub = ",".join(
        o.status.value if not o.reason_text else f"{o.status.value}:{o.reason_text}" for o in outcomes
    )
    out_headers = response_headers(resp, _RESPONSE_DROP) + outcome_headers(summarize(list(outcomes)))
    out_headers.append((b"x-rerank-msearch", per_sub.encode()))
    body = (
        await asyncio.to_thread(dumps, doc, req.pretty)
        if len(content) > _OFF_LOOP
        else dumps(doc, req.pretty)
    )
    await send_response(send, resp.status, out_headers, body)
    return None


def _bypass_of(plan: SearchPlan | Bypass) -> Bypass | None:
    """The bypass a line was planned to (its event keeps what a language bypass says), or None."""
    return plan if isinstance(plan, Bypass) else None


async def _ask_again(
    rt: Runtime, path: bytes, headers: list[tuple[bytes, bytes]], subs: list[_Sub], responses: list[Any]
) -> dict[int, Any]:
    """Sub-searches whose widened request the cluster refused (400, 413) are asked again, in one
    ``_msearch``, as the client sent them: their answers by position (none when the second
    call fails: the refusals stay, and go back)."""
    refused = [
        i
        for i, (s, r) in enumerate(zip(subs, responses, strict=True))
        if isinstance(s.plan, SearchPlan) and isinstance(r, dict) and r.get("status") in WIDEN_REFUSED
    ]
    if not refused:
        return {}
    body = b"".join(dumps(subs[i].header) + b"\n" + dumps(subs[i].body) + b"\n" for i in refused)
    try:
        resp, content = await _call(rt, path, headers, body)
    except UpstreamError:
        return {}
    answers = _answers(_json_response(resp, content), len(refused))
    return {} if answers is None else dict(zip(refused, answers, strict=True))


@dataclass(frozen=True)
class _SubCluster:
    """The cluster as the core of one ``_msearch`` line reaches it: its item of the one
    ``_msearch``, its item of the second one (asked as the client sent it, when the first was
    refused), and the page past the window as a one-line ``_msearch`` under its header."""

    rt: Runtime
    path: bytes
    headers: list[tuple[bytes, bytes]]
    header: Any
    first: Any
    again: Any = None

    async def search(self, plan: SearchPlan) -> Answer | None:
        """Its item of the ``_msearch`` (asked already, with the others)."""
        return _item(self.first)

    async def as_sent(self) -> Answer | None:
        """Its item of the second ``_msearch``; the refusal itself when that failed."""
        return _item(self.first if self.again is None else self.again)

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
                raise ClusterRefused(_item(answers[0]))
        return window_hits(answers[0]) if answers is not None else None


async def _finish_sub(
    sub: _Sub, responses: list[Any], i: int, cluster: _SubCluster, headers: dict[str, str] | None
) -> Outcome:
    """One sub-search's answer, reranked in place by the core; its event recorded."""
    if isinstance(sub.plan, Bypass):
        outcome = Outcome.bypass(sub.plan.reason)
        sub.search.record(outcome, sub.plan)
        return outcome
    assert sub.route is not None  # a plan is made for a route
    result = await run(sub.route, sub.plan, sub.search.event, cluster, headers)
    if result.page is not None:
        responses[i] = result.page
    elif result.answer is not None:
        responses[i] = result.answer.wire
    sub.search.record(result.outcome)
    return result.outcome
