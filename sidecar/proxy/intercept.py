"""The search interceptor: widen, fetch candidates, rerank, page; fall back on any model trouble."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sidecar.engine.batcher import ModelTimeout, Overloaded
from sidecar.engine.circuit import CircuitOpen
from sidecar.events import record
from sidecar.proxy.asgi import BodyTooLarge, Receive, Scope, Send, read_body, send_response
from sidecar.proxy.forward import (
    forward,
    request_headers,
    response_headers,
    send_upstream_error,
    target,
)
from sidecar.proxy.upstream import UpstreamError, UpstreamResponse
from sidecar.runtime import Runtime
from sidecar.search.documents import document_text
from sidecar.search.page import build_page, window_hits
from sidecar.search.plan import Bypass, SearchPlan, plan_search
from sidecar.search.policy import aggregate, decide
from sidecar.search.routes import split_indices
from sidecar.search.variants import rewrite_plan
from sidecar.snapshot import CompiledRoute, Snapshot

log = logging.getLogger(__name__)

_WIDENED_DROP = frozenset({b"content-length", b"content-encoding", b"accept-encoding", b"content-type"})
_RESPONSE_DROP = frozenset({b"content-length", b"content-encoding"})


@dataclass(frozen=True)
class Outcome:
    """What happened to one (sub-)search."""

    status: str
    reason: str = ""
    model: str = ""
    took_ms: float = 0.0
    cut: int = 0
    flags: tuple[str, ...] = ()
    variants: int = 0


def _bypass_headers(reason: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-rerank", b"bypass"), (b"x-rerank-reason", reason.encode())]


def _outcome_headers(outcome: Outcome) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-rerank", outcome.status.encode())]
    if outcome.reason:
        headers.append((b"x-rerank-reason", outcome.reason.encode()))
    if outcome.model:
        headers.append((b"x-rerank-model", outcome.model.encode()))
    if outcome.status != "bypass":
        headers.append((b"x-rerank-took-ms", f"{outcome.took_ms:.1f}".encode()))
        headers.append((b"x-rerank-variants", str(outcome.variants).encode()))
    if outcome.status == "applied":
        headers.append((b"x-rerank-cut", str(outcome.cut).encode()))
        if outcome.flags:
            headers.append((b"x-rerank-flags", ",".join(outcome.flags).encode()))
    return headers


def _header(scope: Scope, name: bytes) -> str:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v).decode("latin-1")
    return ""


def _search_context(scope: Scope) -> str | None:
    """The ``X-Search-Context`` header: the subject vague queries are about."""
    for k, v in scope["headers"]:
        if k == b"x-search-context":
            return bytes(v).decode("utf-8", "replace").strip() or None
    return None


async def _rewritten(route: CompiledRoute, plan: SearchPlan, context: str | None) -> SearchPlan:
    """The plan with its variants; on a fault in rewriting, the plan as it was."""
    try:
        return await rewrite_plan(route.rewriter, route.llm, plan, context)
    except Exception:
        log.exception("query rewriting failed; searching with the original query only")
        return plan


def _rerank_headers(scope: Scope) -> dict[str, str]:
    return {
        k.decode("latin-1"): v.decode("utf-8", "replace")
        for k, v in scope["headers"]
        if k.startswith(b"x-rerank")
    }


def decode_body(scope: Scope, body: bytes) -> bytes | None:
    """The request body as plain bytes, or None when its encoding is not one we read."""
    encoding = _header(scope, b"content-encoding").strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(body)
    except zlib.error:
        return None
    return None


def _json_body(scope: Scope, body: bytes) -> Any:
    """The parsed JSON body (None for an empty one); raises ValueError when it cannot be read."""
    if not body:
        return None
    if "json" not in _header(scope, b"content-type").lower():
        raise ValueError("content-type")
    plain = decode_body(scope, body)
    if plain is None:
        raise ValueError("content-encoding")
    try:
        return json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("unparsed-body") from None


async def rerank_hits(
    compiled: CompiledRoute, plan: SearchPlan, response: dict[str, Any], timing: dict[str, float]
) -> tuple[list[list[float]] | None, Outcome]:
    """Score the window's hits against each of the plan's queries (the original first); None
    (and a fallback outcome) on model error or timeout."""
    route = compiled.config
    hits = response["hits"]["hits"]
    texts = [document_text(h.get("_source"), route.fields, route.template, route.max_chars) for h in hits]
    started = time.perf_counter()
    try:
        per_query = await _score_queries(compiled, plan, texts, timing)
    except ModelTimeout:
        took = (time.perf_counter() - started) * 1000
        return None, Outcome("fallback", "timeout", route.model, took)
    except Overloaded:
        took = (time.perf_counter() - started) * 1000
        return None, Outcome("fallback", "overloaded", route.model, took)
    except CircuitOpen:
        took = (time.perf_counter() - started) * 1000
        return None, Outcome("fallback", "circuit-open", route.model, took)
    except Exception as e:
        took = (time.perf_counter() - started) * 1000
        log.warning("model %s failed, answering in the cluster's order: %s", route.model, e)
        return None, Outcome("fallback", "model-error", route.model, took)
    took = (time.perf_counter() - started) * 1000
    return per_query, Outcome("applied", "", route.model, took)


async def _score_queries(
    route: CompiledRoute, plan: SearchPlan, texts: list[str], timing: dict[str, float]
) -> list[list[float]]:
    """Every candidate against the original query and each variant, in one batcher round where
    they arrive together; the first failure cancels the rest."""
    budget = route.config.timeout_ms / 1000
    queries = plan.queries
    model = route.model
    if len(queries) == 1:
        return [await model.score(queries[0], texts, budget, plan.instruction, timing)]
    tasks = [asyncio.ensure_future(model.score(q, texts, budget, plan.instruction, timing)) for q in queries]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:  # the queued work of the other queries leaves the batcher
            t.cancel()
        raise


async def _finish(
    compiled: CompiledRoute, plan: SearchPlan, response: dict[str, Any], event: dict[str, Any]
) -> tuple[dict[str, Any], Outcome]:
    route = compiled.config
    hits = response["hits"]["hits"]
    event.update(route=compiled.name, query=plan.query, window=route.window, model=route.model)
    event["page"] = {"from": plan.from_, "size": plan.size}
    if plan.rewrite is not None:
        event["variants"] = [{"text": v.text, "rules": list(v.rules)} for v in plan.rewrite.variants]
        event["rules"] = plan.rewrite.rules
        event["retrieval"] = plan.retrieval
        event["timings"]["rewrite_ms"] = round(plan.rewrite.took_ms, 3)
    event["baseline"] = record.baseline(hits, route)
    ids = [h.get("_id") for h in hits]
    per_query, outcome = await rerank_hits(compiled, plan, response, event["timings"])
    outcome = replace(outcome, variants=len(plan.queries) - 1)
    event["timings"]["rerank_ms"] = outcome.took_ms
    if per_query is None:
        return _explained(build_page(response, plan, None, route.annotate), plan), outcome
    cfg = route.rewrite
    scores = aggregate(per_query, cfg.aggregate, cfg.original_weight) if cfg else per_query[0]
    original = [h.get("_score") for h in hits]
    decision = decide(route, scores, [o if isinstance(o, (int, float)) else None for o in original])
    outcome = replace(outcome, cut=decision.cut, flags=decision.flags)
    event.update(cut=decision.cut, flags=list(decision.flags))
    fused = None if route.fusion == "replace" else decision.final
    event["final"] = record.final(ids, decision.order, decision.shown, scores, per_query, fused)
    for row, score in zip(event["baseline"], scores, strict=True):
        row["model_score"] = score  # the whole window's, cut hits too: what threshold previews need
    return _explained(build_page(response, plan, scores, route.annotate, decision), plan), outcome


def _explained(page: dict[str, Any], plan: SearchPlan) -> dict[str, Any]:
    """With ``X-Rerank-Explain``, the query, its variants and the rules that made them under ``_rerank``."""
    if plan.explain:
        rewrite = plan.rewrite
        variants = rewrite.variants if rewrite else ()
        page["_rerank"] = {
            "query": plan.query,
            "variants": [{"text": v.text, "rules": list(v.rules)} for v in variants],
            "rules": rewrite.rules if rewrite else [],
            "retrieval": plan.retrieval,
        }
    return page


def _record(rt: Runtime, event: dict[str, Any], outcome: Outcome, started: float) -> None:
    event.update(status=outcome.status, reason=outcome.reason)
    event["timings"]["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    rt.events.add(event)
    rt.metrics.observe(event)


def _dumps(doc: Any, pretty: bool = False) -> bytes:
    """JSON as UTF-8; text with lone surrogates (valid as JSON escapes, not as UTF-8) stays escaped."""
    layout: dict[str, Any] = (
        {"indent": 2, "separators": (",", " : ")} if pretty else {"separators": (",", ":")}
    )
    end = b"\n" if pretty else b""
    try:
        return json.dumps(doc, ensure_ascii=False, **layout).encode() + end
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, **layout).encode() + end


def _pretty(params: Sequence[tuple[str, str]]) -> bool:
    return any(k == "pretty" and v.lower() in ("", "true") for k, v in params)


async def _read_or_forward(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> bytes | None:
    """Buffer the body; past the limit, forward what was read plus the rest, and return None."""
    try:
        return await read_body(receive, rt.config.max_search_body_bytes)
    except BodyTooLarge as e:
        await forward(rt, scope, receive, send, head=e.head, extra_headers=_bypass_headers("body-too-large"))
        return None


async def handle_search(rt: Runtime, scope: Scope, receive: Receive, send: Send, index: str | None) -> None:
    """``/_search`` and ``/{index}/_search``; every one leaves an event. The whole search is
    served by the config snapshot it started with."""
    with rt.lease() as snap:
        await _search(rt, snap, scope, receive, send, index)


async def _search(
    rt: Runtime, snap: Snapshot, scope: Scope, receive: Receive, send: Send, index: str | None
) -> None:
    started = time.perf_counter()
    rerank_headers = _rerank_headers(scope)
    event = record.new_event(index, rerank_headers)
    compiled = snap.match(split_indices(index))
    if compiled is None:
        _record(rt, event, Outcome("bypass", "no-route"), started)
        await forward(rt, scope, receive, send, extra_headers=_bypass_headers("no-route"))
        return
    event["route"] = compiled.name
    raw = await _read_or_forward(rt, scope, receive, send)
    if raw is None:
        _record(rt, event, Outcome("bypass", "body-too-large"), started)
        return
    params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    try:
        body = _json_body(scope, raw)
    except ValueError as e:
        _record(rt, event, Outcome("bypass", str(e)), started)
        await forward(rt, scope, receive, send, body=raw, extra_headers=_bypass_headers(str(e)))
        return
    plan = plan_search(compiled.config, body, params, rerank_headers)
    if isinstance(plan, Bypass):
        _record(rt, event, Outcome("bypass", plan.reason), started)
        await forward(rt, scope, receive, send, body=raw, extra_headers=_bypass_headers(plan.reason))
        return
    plan = await _rewritten(compiled, plan, _search_context(scope))

    headers = request_headers(scope, _WIDENED_DROP)
    headers.append((b"content-type", b"application/json"))
    upstream_started = time.perf_counter()
    fetched = await _fetch(
        rt, send, target(scope, urlencode(plan.params).encode()), headers, _dumps(plan.body)
    )
    event["timings"]["upstream_ms"] = round((time.perf_counter() - upstream_started) * 1000, 2)
    if fetched is None:
        _record(rt, event, Outcome("bypass", "upstream-unavailable"), started)
        return
    resp, content = fetched
    parsed = _json_response(resp, content)
    if parsed is None or window_hits(parsed) is None:
        reason = f"upstream-status-{resp.status}"
        _record(rt, event, Outcome("bypass", reason), started)
        extra = _bypass_headers(reason)
        await send_response(send, resp.status, response_headers(resp, _RESPONSE_DROP) + extra, content)
        return
    page, outcome = await _finish(compiled, plan, parsed, event)
    _record(rt, event, outcome, started)
    out_headers = response_headers(resp, _RESPONSE_DROP) + _outcome_headers(outcome)
    out_headers.append((b"x-rerank-event", event["id"].encode()))
    await send_response(send, resp.status, out_headers, _dumps(page, _pretty(params)))


async def _fetch(
    rt: Runtime, send: Send, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[UpstreamResponse, bytes] | None:
    """POST the widened request; on an upstream failure answer the client and return None."""
    try:
        resp = await rt.upstream.request("POST", path, headers, body)
        try:
            return resp, await resp.read()
        finally:
            resp.release()
    except UpstreamError as e:
        await send_upstream_error(send, e)
        return None


def _json_response(resp: UpstreamResponse, content: bytes) -> Any:
    """A 200 JSON body, parsed; None for anything else."""
    ctype = next((v for k, v in resp.headers if k.lower() == b"content-type"), b"")
    if resp.status != 200 or b"json" not in ctype:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


@dataclass(frozen=True)
class _SubSearch:
    header: Any
    body: Any
    plan: SearchPlan | Bypass
    route: CompiledRoute | None = None


def _parse_msearch(raw: bytes) -> list[tuple[Any, Any]] | None:
    lines = [ln for ln in raw.split(b"\n") if ln.strip()]
    if len(lines) % 2:
        return None
    try:
        docs = [json.loads(ln) for ln in lines]
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return list(zip(docs[0::2], docs[1::2], strict=True))


def _plan_sub(
    snap: Snapshot, header: Any, body: Any, default_index: str | None, rerank_headers: Mapping[str, str]
) -> _SubSearch:
    if not isinstance(header, dict):
        return _SubSearch(header, body, Bypass("unparsed-header"))
    route = snap.match(split_indices(header.get("index", default_index)))
    if route is None:
        return _SubSearch(header, body, Bypass("no-route"))
    return _SubSearch(header, body, plan_search(route.config, body, (), rerank_headers), route)


async def handle_msearch(rt: Runtime, scope: Scope, receive: Receive, send: Send, index: str | None) -> None:
    """``/_msearch`` and ``/{index}/_msearch``: each sub-search on its own, all of them served
    by the config snapshot the request started with."""
    with rt.lease() as snap:
        await _msearch(rt, snap, scope, receive, send, index)


async def _msearch(
    rt: Runtime, snap: Snapshot, scope: Scope, receive: Receive, send: Send, index: str | None
) -> None:
    raw = await _read_or_forward(rt, scope, receive, send)
    if raw is None:
        return
    plain = decode_body(scope, raw) if raw else b""
    pairs = _parse_msearch(plain) if plain is not None else None
    if not pairs:
        await forward(rt, scope, receive, send, body=raw, extra_headers=_bypass_headers("unparsed-body"))
        return
    rerank_headers = _rerank_headers(scope)
    subs = [_plan_sub(snap, h, b, index, rerank_headers) for h, b in pairs]
    if not any(isinstance(s.plan, SearchPlan) for s in subs):
        reasons = ",".join(s.plan.reason for s in subs if isinstance(s.plan, Bypass))
        await forward(rt, scope, receive, send, body=raw, extra_headers=_bypass_headers(reasons))
        return
    context = _search_context(scope)

    async def rewritten(sub: _SubSearch) -> _SubSearch:
        if isinstance(sub.plan, SearchPlan) and sub.route is not None:
            return replace(sub, plan=await _rewritten(sub.route, sub.plan, context))
        return sub

    subs = list(await asyncio.gather(*(rewritten(s) for s in subs)))

    lines: list[bytes] = []
    for s in subs:
        lines.append(_dumps(s.header))
        lines.append(_dumps(s.plan.body if isinstance(s.plan, SearchPlan) else s.body))
    headers = request_headers(scope, _WIDENED_DROP)
    headers.append((b"content-type", b"application/x-ndjson"))
    fetched = await _fetch(rt, send, target(scope), headers, b"\n".join(lines) + b"\n")
    if fetched is None:
        return
    resp, content = fetched
    doc = _json_response(resp, content)
    responses = doc.get("responses") if isinstance(doc, dict) else None
    if not isinstance(responses, list) or len(responses) != len(subs):
        extra = _bypass_headers(f"upstream-status-{resp.status}")
        await send_response(send, resp.status, response_headers(resp, _RESPONSE_DROP) + extra, content)
        return
    outcomes = await _rerank_msearch(rt, subs, responses, index, scope)
    summary = _summarize(outcomes)
    per_sub = ",".join(o.status if not o.reason else f"{o.status}:{o.reason}" for o in outcomes)
    out_headers = response_headers(resp, _RESPONSE_DROP) + _outcome_headers(summary)
    out_headers.append((b"x-rerank-msearch", per_sub.encode()))
    pretty = _pretty(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    await send_response(send, resp.status, out_headers, _dumps(doc, pretty))


async def _rerank_msearch(
    rt: Runtime, subs: Sequence[_SubSearch], responses: list[Any], default_index: str | None, scope: Scope
) -> list[Outcome]:
    started = time.perf_counter()
    rerank_headers = _rerank_headers(scope)

    async def one(i: int, sub: _SubSearch) -> Outcome:
        index = sub.header.get("index", default_index) if isinstance(sub.header, dict) else default_index
        event = record.new_event(",".join(split_indices(index)), rerank_headers)
        plan = sub.plan
        response = responses[i]
        if isinstance(plan, Bypass):
            outcome = Outcome("bypass", plan.reason)
        elif (
            not isinstance(response, dict)
            or response.get("status", 200) != 200
            or window_hits(response) is None
        ):
            outcome = Outcome("bypass", "upstream-error")
        else:
            assert sub.route is not None  # a plan is made for a route
            responses[i], outcome = await _finish(sub.route, plan, response, event)
        _record(rt, event, outcome, started)
        return outcome

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(subs))))


def _summarize(outcomes: Sequence[Outcome]) -> Outcome:
    for status in ("applied", "fallback"):
        hits = [o for o in outcomes if o.status == status]
        if hits:
            return Outcome(status, hits[0].reason, hits[0].model, max(o.took_ms for o in hits))
    return Outcome("bypass", outcomes[0].reason if outcomes else "")
