"""The rerank step of one (sub-)search and the step that builds its answer and its event."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from sidecar.config import RouteConfig
from sidecar.documents import document_text
from sidecar.engine.circuit import CircuitOpen
from sidecar.engine.protocol import ModelTimeout, Overloaded, Scored
from sidecar.events import record
from sidecar.events.event import SearchEvent, VariantRecord
from sidecar.experiments.assign import identity
from sidecar.experiments.tracker import Impression
from sidecar.search import languages
from sidecar.search.outcome import Outcome
from sidecar.search.page import build_page, tail_range
from sidecar.search.plan import SearchPlan
from sidecar.search.policy import Decision, aggregate, decide
from sidecar.search.serve import Lab, Served, choose, page_credit
from sidecar.search.snapshot import CompiledRoute
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
            scored = await compiled.model.score_queries(
                plan.queries, [texts[i] for i in read], budget, plan.instruction
            )
            per_query = [_spread(s, read, len(texts)) for s in scored]
        else:
            per_query = [Scored([0.0] * len(texts)) for _ in plan.queries]
    except Exception as e:
        took = (time.perf_counter() - started) * 1000
        reason = next((r for kind, r in _FAULTS if isinstance(e, kind)), Reason.MODEL_ERROR)
        if reason is Reason.MODEL_ERROR:
            log.warning("model %s failed, answering in the cluster's order: %s", route.model, e)
        return None, Outcome(Status.FALLBACK, reason, route.model, took)
    took = (time.perf_counter() - started) * 1000
    return per_query, Outcome(Status.APPLIED, Reason.NONE, route.model, took)


def _spread(scored: Scored, read: list[int], n: int) -> Scored:
    """Scores of the texts that were read, laid out over all ``n`` (0 for the others)."""
    scores = [0.0] * n
    for i, value in zip(read, scored.scores, strict=True):
        scores[i] = value
    return Scored(scores, scored.queue_ms, scored.model_ms)


class Upstream(Protocol):
    """The cluster as the core reaches it, given by the adapter that serves the search (one
    ``_search``, or one line of an ``_msearch``); a fake one in the core's unit tests."""

    async def hits(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The cluster's hits for a widened body; None when it would not give them (ClusterRefused
        when it answered with an error of the client's: that answer goes back)."""
        ...


class ClusterRefused(Exception):
    """The cluster refused the page past the window (``from: 9995`` past its result window):
    the client gets the cluster's own error, as it would going direct."""

    def __init__(self, status: int, answer: Any, headers: Any = (), raw: bytes = b"") -> None:
        super().__init__(f"the cluster answered {status}")
        self.status, self.answer, self.headers, self.raw = status, answer, headers, raw


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
    where it looks for the user's identity."""
    if plan.model is not None:  # the route's model for the query's language
        compiled = _with_model(compiled, plan.model)
    route = plan.effective(compiled.config)
    hits = response["hits"]["hits"]
    event.route, event.query, event.window, event.model = compiled.name, plan.query, route.window, route.model
    event.language = plan.language
    event.page = record.page(plan.from_, plan.size)
    if plan.rewrite is not None:
        event.variants = [VariantRecord(text=v.text, rules=list(v.rules)) for v in plan.rewrite.variants]
        event.rules = list(plan.rewrite.rules)
        event.retrieval = plan.retrieval
        event.timings.rewrite_ms = round(plan.rewrite.took_ms, 3)
    event.baseline = record.baseline(hits, route)
    texts = [document_text(h.get("_source"), route.fields, route.template, route.max_chars) for h in hits]
    timed: list[Scored] | None = None
    if plan.window_language:  # a query with no letters: its window tells the language
        event.language, model, rerank = languages.of_window(compiled.config, compiled.model.reads, texts)
        if model is not None:
            compiled = _with_model(compiled, model)
            route = route.model_copy(update={"model": model})
            event.model = model
        outcome = Outcome(Status.FALLBACK, Reason.LANGUAGE, route.model)
    if not plan.window_language or rerank:
        timed, outcome = await rerank_hits(compiled, plan, texts)
    outcome = replace(outcome, variants=len(plan.queries) - 1)
    event.timings.rerank_ms = outcome.took_ms
    if timed is None:
        tail = await _tail(plan, route.window, len(hits), len(hits), upstream)
        page = build_page(response, plan, None, route.annotate, tail=tail)
        return explained(_ubi_answer(page, plan, event, compiled.lab), plan), outcome
    # the query and its variants were scored side by side: the longest wait and work of any
    event.timings.queue_ms = max((t.queue_ms for t in timed if t.queue_ms is not None), default=None)
    event.timings.model_ms = max((t.model_ms for t in timed if t.model_ms is not None), default=None)
    per_query = [t.scores for t in timed]
    scores = _aggregated(route, per_query)
    original = [h.get("_score") for h in hits]
    cluster = [o if isinstance(o, (int, float)) else None for o in original]
    missing = [i for i, t in enumerate(texts) if not t]
    for i in missing:
        event.baseline[i].no_text = True  # what a threshold preview needs to decide as the sidecar did
    decision = decide(route, scores, cluster, missing)
    outcome = replace(outcome, cut=decision.cut, flags=decision.flags)
    event.cut, event.flags = decision.cut, list(decision.flags)
    fused = None if route.fusion == "replace" else decision.final
    ids = [h.get("_id") for h in hits]
    event.final = record.final(ids, decision.order, decision.shown, scores, per_query, fused)
    for row, score in zip(event.baseline, scores, strict=True):
        row.model_score = score  # the whole window's, cut hits too: what threshold previews need
    served = None
    if compiled.lab is not None:

        async def rescore(arm: RouteConfig) -> list[float] | None:
            model = compiled.models.get(arm.model)
            if model is None:
                return None
            got, _ = await rerank_hits(replace(compiled, config=arm, model=model, lab=None), plan, texts)
            return None if got is None else _aggregated(arm, [t.scores for t in got])

        who = identity(compiled.lab.config.identity, plan.ubi, headers or {})
        served = await choose(
            compiled.lab, route, plan.query, who, decision, scores, cluster, missing, rescore
        )
    shown: Decision | None = decision if served is None else _served_decision(served, decision, len(hits))
    # a cut says the rest is not relevant: the list ends with the kept hits
    kept = len(hits) if shown is None else len(shown.order)
    tail = (
        [] if shown is not None and shown.cut else await _tail(plan, route.window, len(hits), kept, upstream)
    )
    # under an experiment no hit says where the cluster ranked it (which arm placed it), and
    # the answer names no model: a client cannot tell the arms apart to steer its clicks
    annotate = route.annotate and compiled.lab is None
    page = build_page(response, plan, None if shown is None else scores, annotate, shown, tail)
    page = _ubi_answer(page, plan, event, compiled.lab)
    if served is not None:
        outcome = replace(outcome, model="")
    if served is not None and compiled.lab is not None and event.query_id is not None:
        event.experiment = served.record
        page_ids = event.served or []
        event.experiment.credit = page_credit(served.credit, plan.from_, plan.size, len(page_ids))
        shadow = compiled.lab.config.mode == "shadow"
        imp = Impression.of(
            event,
            [ids[i] for i in served.control] if shadow else None,
            [ids[i] for i in served.treatment] if shadow else None,
        )
        if imp is not None:
            if compiled.lab.redact:
                imp.query = None
            compiled.lab.tracker.add(imp)
    return explained(page, plan), outcome


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


def _ubi_answer(
    page: dict[str, Any], plan: SearchPlan, event: SearchEvent, lab: Lab | None
) -> dict[str, Any]:
    """A search that carried ``ext.ubi`` (or runs under an experiment) gets a query_id, its
    own or a new one (signed, under an experiment), in the answer's ``ext.ubi`` as the UBI
    plugin gives it; the event keeps it with the ids of the page served, which clicks are
    matched against (under an experiment, with the identity that searched)."""
    if plan.ubi is None and lab is None:
        return page
    given = plan.ubi.get("query_id") if plan.ubi else None
    if isinstance(given, (str, int)) and not isinstance(given, bool) and str(given).strip():
        query_id = str(given)[:200]
    else:
        query_id = lab.tracker.issue() if lab is not None else uuid.uuid4().hex
    event.query_id = query_id
    client = plan.ubi.get("client_id") if plan.ubi else None
    event.client_id = str(client) if isinstance(client, (str, int)) else None
    event.served = [h.get("_id") for h in page["hits"]["hits"]]
    ext = page.get("ext")
    if not isinstance(ext, dict):
        ext = page["ext"] = {}
    ext["ubi"] = {"query_id": query_id}
    return page


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
