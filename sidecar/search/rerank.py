"""The rerank half of the core: once the cluster has answered, stages that each return a
frozen result, composed by ``finish``.

    routed -> window_of -> score -> decide -> serve (an experiment's arm) -> page

The cluster is reached through the ``Upstream`` that the adapter gives (the page past the
window); the event is filled once, from the stage results (``record.searched``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sidecar import tracing
from sidecar.config import RouteConfig
from sidecar.documents import window_texts
from sidecar.engine.circuit import CircuitOpen
from sidecar.engine.protocol import ModelTimeout, Overloaded, Scored, ScoreRequest
from sidecar.events.event import SearchEvent
from sidecar.experiments.assign import identity
from sidecar.experiments.tracker import Impression
from sidecar.search import languages, record
from sidecar.search.cluster import ClusterRefused, Upstream
from sidecar.search.outcome import Outcome
from sidecar.search.page import Explainer, build_page, tail_range
from sidecar.search.paging import REMEMBERED, FallbackMemory
from sidecar.search.plan import SearchPlan
from sidecar.search.policy import Decision, aggregate, decide
from sidecar.search.record import Ubi
from sidecar.search.serve import Lab, Served, choose
from sidecar.search.snapshot import CompiledRoute
from sidecar.search.stages import Scoring, Window
from sidecar.vocab import Reason, Status

log = logging.getLogger(__name__)


_FAULTS: tuple[tuple[type[BaseException], Reason], ...] = (
    (ModelTimeout, Reason.TIMEOUT),
    (Overloaded, Reason.OVERLOADED),
    (CircuitOpen, Reason.CIRCUIT_OPEN),
)


async def rerank_hits(
    compiled: CompiledRoute, plan: SearchPlan, texts: list[str]
) -> tuple[list[Scored] | None, Outcome]:
    """Score the window's texts against each of the plan's queries (the original first); a hit
    with no text is not sent to the model and scores 0. None (and a fallback outcome) on model
    error or timeout."""
    route = compiled.config
    read = [i for i, t in enumerate(texts) if t]
    started = time.perf_counter()
    try:
        if read:
            budget = route.timeout_ms / 1000  # one request to the model for the query and its variants
            request = ScoreRequest.of(plan.queries, [texts[i] for i in read], plan.instruction, budget)
            with tracing.span("score", {"rerank.model": route.model, "rerank.documents": len(read)}):
                scored = await compiled.model.score(request)
                if tracing.on():
                    _traced_model(started, scored)
            per_query = [_spread(s, read, len(texts)) for s in scored]
        else:
            per_query = [Scored([0.0] * len(texts)) for _ in plan.queries]
    except Exception as e:
        took = (time.perf_counter() - started) * 1000
        reason = next((r for kind, r in _FAULTS if isinstance(e, kind)), Reason.MODEL_ERROR)
        if reason is Reason.MODEL_ERROR:
            log.warning(
                "model %s failed, answering in the cluster's order: %s",
                route.model,
                e,
                extra={"reason": reason.value},
            )
        return None, Outcome(Status.FALLBACK, reason, route.model, took)
    took = (time.perf_counter() - started) * 1000
    return per_query, Outcome(Status.APPLIED, Reason.NONE, route.model, took)


def _traced_model(started: float, scored: list[Scored]) -> None:
    """The queue wait and the model pass under the ``score`` span, at the times they took
    (the longest of the query's and its variants', which were scored as one piece of work)."""
    queue = max((s.queue_ms for s in scored if s.queue_ms is not None), default=None)
    model = max((s.model_ms for s in scored if s.model_ms is not None), default=None)
    if queue is None or model is None:
        tracing.annotate({"rerank.cached": True})  # every score came from the cache
        return
    first = scored[0]
    tracing.measured("queue", started, started + queue / 1000)
    tracing.measured(
        "model",
        started + queue / 1000,
        started + (queue + model) / 1000,
        {"rerank.batch_size": first.batch, "rerank.tokens": first.tokens, "rerank.queries": len(scored)},
    )


def _spread(scored: Scored, read: list[int], n: int) -> Scored:
    """Scores of the texts that were read, laid out over all ``n`` (0 for the others)."""
    scores = [0.0] * n
    for i, value in zip(read, scored.scores, strict=True):
        scores[i] = value
    return replace(scored, scores=scores)


async def _tail(
    plan: SearchPlan, window: int, hits: int, kept: int, upstream: Upstream | None
) -> list[dict[str, Any]]:
    """The cluster's hits after the window that the client's page reaches (none when it ends
    within the reranked hits). Without them the page comes back short, never wrong."""
    wanted = tail_range(plan, hits, kept, window)
    if wanted is None and upstream is not None and hits < window and plan.from_ + plan.size > window:
        # the page lies past every hit there is: the cluster is asked for it all the same, as
        # it may refuse it (from + size past its max_result_window), and then says so itself
        await upstream.hits(plan.past_window(plan.from_, plan.size))
        return []
    if wanted is None or upstream is None:
        return []
    found = await upstream.hits(plan.past_window(*wanted))
    if found is None:
        log.warning("the cluster did not give the hits after the window; the page is short")
    return found or []


def routed(compiled: CompiledRoute, plan: SearchPlan) -> tuple[CompiledRoute, RouteConfig]:
    """The route that serves the plan (its language's model where the plan names one) and its
    settings with the request's overrides."""
    if plan.model is not None:
        compiled = _with_model(compiled, plan.model)
    return compiled, plan.effective(compiled.config)


def window_of(route: RouteConfig, response: dict[str, Any]) -> Window:
    """The cluster's window with the text of each hit, as the route reads it."""
    hits = response["hits"]["hits"]
    texts, titles = window_texts(
        [h.get("_source") for h in hits], route.fields, route.template, route.max_chars
    )
    ids = [h.get("_id") for h in hits]
    given = [h.get("_score") for h in hits]
    cluster: list[float | None] = [s if type(s) is float or type(s) is int else None for s in given]
    return Window(hits, texts, ids, cluster, record.baseline(ids, cluster, titles))


async def score(compiled: CompiledRoute, route: RouteConfig, plan: SearchPlan, window: Window) -> Scoring:
    """The model's scores of the window against the query and its variants, aggregated. A query
    with no letters is told by its window's language: another model, or the cluster's order."""
    language, rerank = plan.language, True
    outcome = Outcome(Status.FALLBACK, Reason.LANGUAGE, route.model)
    if plan.window_language:
        language, model, rerank = languages.of_window(compiled.config, compiled.model.reads, window.texts)
        if model is not None:
            compiled = _with_model(compiled, model)
            route = route.model_copy(update={"model": model})
            outcome = replace(outcome, model=model)
    timed: list[Scored] | None = None
    if rerank:
        timed, outcome = await rerank_hits(compiled, plan, window.texts)
    outcome = replace(outcome, variants=len(plan.queries) - 1)
    if timed is None:
        return Scoring(compiled, route, outcome, language)
    per_query = [t.scores for t in timed]
    # the query and its variants were scored side by side: the longest wait and work of any
    return Scoring(
        compiled,
        route,
        outcome,
        language,
        per_query,
        _aggregated(route, per_query),
        max((t.queue_ms for t in timed if t.queue_ms is not None), default=None),
        max((t.model_ms for t in timed if t.model_ms is not None), default=None),
    )


async def serve(
    scoring: Scoring,
    plan: SearchPlan,
    window: Window,
    decision: Decision,
    headers: Mapping[str, str] | None,
) -> Served | None:
    """The order an experiment serves (an arm's, or both interleaved), the other arm scored on
    the same window; None without an experiment, or when an arm could not be made."""
    compiled, route, scores = scoring.compiled, scoring.route, scoring.scores
    lab = compiled.lab
    if lab is None or scores is None:
        return None

    async def rescore(arm: RouteConfig) -> list[float] | None:
        model = compiled.models.get(arm.model)
        if model is None:
            return None
        got, _ = await rerank_hits(replace(compiled, config=arm, model=model, lab=None), plan, window.texts)
        return None if got is None else _aggregated(arm, [t.scores for t in got])

    who = identity(lab.config.identity, plan.ubi, headers or {})
    return await choose(
        lab, route, plan.query, who, decision, scores, window.cluster, window.missing, rescore
    )


async def page_of(
    scoring: Scoring,
    plan: SearchPlan,
    response: dict[str, Any],
    window: Window,
    shown: Decision | None,
    upstream: Upstream | None,
) -> tuple[dict[str, Any], Ubi | None]:
    """The client's page: the order shown (None: the cluster's), continued past the window by
    the cluster's order where the page reaches beyond it (a cut says the rest is not relevant:
    the list ends with the kept hits), with the UBI query id it was served under."""
    route, lab, n = scoring.route, scoring.compiled.lab, len(window.hits)
    kept = n if shown is None else len(shown.order)
    cut = shown is not None and shown.cut
    tail = [] if cut else await _tail(plan, route.window, n, kept, upstream)
    # under an experiment no hit says where the cluster ranked it (which arm placed it), and
    # the answer names no model: a client cannot tell the arms apart to steer its clicks
    annotate = route.annotate and lab is None
    scores = None if shown is None else scoring.scores
    explainer = None
    if shown is not None:
        explainer = Explainer(
            route.model, route.fusion, route.alpha, route.rrf_k, shown.final, hidden=lab is not None
        )
    page = build_page(response, plan, scores, annotate, shown, tail, explainer)
    ubi = _ubi(page, plan, lab)
    return explained(page, plan), ubi


async def finish(
    compiled: CompiledRoute,
    plan: SearchPlan,
    response: dict[str, Any],
    event: SearchEvent,
    upstream: Upstream | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], Outcome]:
    """Rerank the window and cut the client's page out of it (continued by the cluster's order
    past the window, from ``upstream``, where the page reaches beyond it); the event records the
    plan, the cluster's window and what the model made of it. Under an experiment the page is
    the order its arm (or the interleaving of both) gives; ``headers`` (lower-case names) are
    where it looks for the user's identity. On a fault of the sidecar's own the client still
    gets its page, in the cluster's order (fallback ``sidecar-error``), and the event says what
    was asked; ClusterRefused goes on to the adapter: the cluster's own error is the answer."""
    try:
        compiled, route = routed(compiled, plan)
        window = window_of(route, response)
        memory, key = compiled.paging, None
        if plan.from_ > 0 and len(memory):
            key = FallbackMemory.key(event.index, plan)
            if memory.recalls(key):  # its earlier page fell back: the cluster's order goes on
                outcome = Outcome(Status.FALLBACK, Reason.PAGED_FALLBACK, route.model)
                scoring = Scoring(compiled, route, outcome, plan.language)
                page, ubi = await page_of(scoring, plan, response, window, None, upstream)
                record.searched(event, compiled.name, plan, route, window, scoring, None, ubi, None)
                return page, outcome
        scoring = await score(compiled, route, plan, window)
        outcome = scoring.outcome
        if scoring.scores is None and outcome.reason in REMEMBERED:
            memory.remember(key or FallbackMemory.key(event.index, plan))
        elif plan.from_ == 0 and len(memory):
            memory.forget(FallbackMemory.key(event.index, plan))
        if scoring.scores is None:
            page, ubi = await page_of(scoring, plan, response, window, None, upstream)
            record.searched(event, compiled.name, plan, route, window, scoring, None, ubi, None)
            return page, outcome
        with tracing.span("fusion"):
            decision = decide(scoring.route, scoring.scores, window.cluster, window.missing)
            outcome = replace(outcome, cut=decision.cut, flags=decision.flags)
            served = await serve(scoring, plan, window, decision, headers)
        shown = decision if served is None else _served_decision(served, decision, len(window.hits))
        with tracing.span("page"):
            page, ubi = await page_of(scoring, plan, response, window, shown, upstream)
        if served is not None:
            outcome = replace(outcome, model="")
        record.searched(event, compiled.name, plan, route, window, scoring, decision, ubi, served)
        lab = scoring.compiled.lab
        if served is not None and lab is not None and event.experiment is not None:
            _impression(lab, event, served, window)
        return page, outcome
    except ClusterRefused:
        raise
    except Exception:
        log.exception("reranking failed after the cluster answered; the cluster's order is served")
        record.planned(event, compiled.name, plan, plan.effective(compiled.config))
        return cluster_page(response, plan), Outcome.fallback(Reason.SIDECAR_ERROR)


def cluster_page(response: dict[str, Any], plan: SearchPlan) -> dict[str, Any]:
    """The client's page of the widened answer in the cluster's order (when the rest failed)."""
    try:
        return build_page(response, plan, None, False)
    except Exception:
        log.exception("the cluster's page could not be cut either")
        raise


def _impression(lab: Lab, event: SearchEvent, served: Served, window: Window) -> None:
    """The experiment's tracker counts the page served (under shadow, both arms' orders)."""
    shadow = lab.config.mode == "shadow"
    ids = window.ids
    imp = Impression.of(
        event,
        [ids[i] for i in served.control] if shadow else None,
        [ids[i] for i in served.treatment] if shadow else None,
    )
    if imp is not None:
        if lab.redact:
            imp.query = None
        lab.tracker.add(imp)


def _with_model(compiled: CompiledRoute, model: str) -> CompiledRoute:
    """The route served by another of the snapshot's models (its language's)."""
    config = compiled.config.model_copy(update={"model": model})
    return replace(compiled, config=config, model=compiled.models[model])


def _aggregated(route: RouteConfig, per_query: list[list[float]]) -> list[float]:
    """One score per hit from its scores against the query and each variant."""
    cfg = route.rewrite
    return aggregate(per_query, cfg.aggregate, cfg.original_weight) if cfg else per_query[0]


def _served_decision(served: Served, decision: Decision, n: int) -> Decision | None:
    """The decision the page is built from: the served arm's order (None: the cluster's)."""
    arm = served.served
    if arm.order is None:
        return None
    assert arm.shown is not None
    return Decision(arm.order, decision.final, n - len(arm.order), decision.flags, arm.shown)


def _ubi(page: dict[str, Any], plan: SearchPlan, lab: Lab | None) -> Ubi | None:
    """A search that carried ``ext.ubi`` (or runs under an experiment) gets a query_id, its
    own or a new one (signed, under an experiment), in the answer's ``ext.ubi`` as the UBI
    plugin gives it; the event keeps it with the ids of the page served, which clicks are
    matched against (under an experiment, with the identity that searched)."""
    if plan.ubi is None and lab is None:
        return None
    given = plan.ubi.get("query_id") if plan.ubi else None
    if isinstance(given, (str, int)) and not isinstance(given, bool) and str(given).strip():
        query_id = str(given)[:200]
    else:
        query_id = lab.tracker.issue() if lab is not None else uuid.uuid4().hex
    client = plan.ubi.get("client_id") if plan.ubi else None
    ext = page.get("ext")
    if not isinstance(ext, dict):
        ext = page["ext"] = {}
    ext["ubi"] = {"query_id": query_id}
    return Ubi(
        query_id,
        str(client) if isinstance(client, (str, int)) else None,
        [h.get("_id") for h in page["hits"]["hits"]],
    )


def explained(page: dict[str, Any], plan: SearchPlan) -> dict[str, Any]:
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
