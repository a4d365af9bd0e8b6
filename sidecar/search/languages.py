"""The language step of a search: a query in a language the route's model does not read goes
to the model the route names for that language, or to the cluster's order (reason
``language``); never to a model guessing at text it was not trained on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sidecar.config import RouteConfig
from sidecar.language import Detected, Reads, detect, detect_all
from sidecar.search.plan import Bypass, SearchPlan
from sidecar.vocab import Reason

WINDOW_TEXTS = 10  # the window's first texts that tell a query's language when it has no letters
WINDOW_CHARS = 300  # of each


def detected(route: RouteConfig, reads: Reads, plan: SearchPlan) -> SearchPlan:
    """The plan with its query's language, where that matters: the route's model does not
    read every language (otherwise nothing is looked at). A query with no letters (a number,
    a code) is left to its window (``window_language``)."""
    if reads.everything:
        return plan
    found = detect(plan.query)
    if found is None:
        return replace(plan, window_language=True)
    return replace(plan, language=found.language)


def reranker(route: RouteConfig, reads: Reads, query: str, variants: Sequence[str] = ()) -> str | None:
    """The model that reranks a query and its variants: the route's when it reads the query,
    the route's ``models_by_language`` one for the query's language, the route's again when
    a variant has words it reads that the query has not (rules that put terms of its
    language in), else None: the cluster's order."""
    found = detect(query)
    if reads(found):
        return route.model
    assert found is not None  # a text with no letters is read by every model
    model = route.models_by_language.get(found.language)
    if model is not None:
        return model
    if any(reads.more(detect(v), found) for v in variants):  # rules gave it words the model reads
        return route.model
    return None


def decided(route: RouteConfig, reads: Reads, plan: SearchPlan) -> SearchPlan | Bypass:
    """After rewriting: the plan with the model that reranks it (see ``reranker``), or a
    bypass for reason ``language``: the search goes to the cluster unchanged."""
    if plan.language is None or reads.everything:
        return plan
    variants = [v.text for v in plan.rewrite.variants] if plan.rewrite is not None else []
    model = reranker(route, reads, plan.query, variants)
    if model is None:
        return Bypass(Reason.LANGUAGE)
    return plan if model == route.model else replace(plan, model=model)


def of_window(route: RouteConfig, reads: Reads, texts: Sequence[str]) -> tuple[str | None, str | None, bool]:
    """For a query with no letters: the window's language, the model for it (None: the
    route's) and whether the search is reranked at all (False: the cluster's order)."""
    found: Detected | None = detect_all([t for t in texts[:WINDOW_TEXTS] if t], WINDOW_CHARS)
    if found is None or reads(found):
        return (found.language if found else None), None, True
    model = route.models_by_language.get(found.language)
    if model is not None and model != route.model:
        return found.language, model, True
    return found.language, None, False
