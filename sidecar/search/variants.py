"""The rewrite step of one search: variants for the plan, and the widened body expanded with them."""

from __future__ import annotations

import time
from dataclasses import replace

from sidecar.rewrite.llm import LlmRewriter, rewrite_with_llm
from sidecar.rewrite.rules import Rewriter
from sidecar.search.expand import expand_query
from sidecar.search.plan import SearchPlan


async def rewrite_plan(
    rewriter: Rewriter | None, llm: LlmRewriter | None, plan: SearchPlan, context: str | None
) -> SearchPlan:
    """The plan with its variants; with ``retrieval: expanded`` the cluster query carries them too."""
    if rewriter is None:
        return plan
    rewriter = rewriter.for_language(plan.language)  # a language's own rules, where it has some
    started = time.perf_counter()
    if llm is not None:
        rewrite = await rewrite_with_llm(rewriter, llm, plan.query, context)
    else:
        rewrite = rewriter.rewrite(plan.query, context)
    plan = replace(plan, rewrite=replace(rewrite, took_ms=(time.perf_counter() - started) * 1000))
    if not rewrite.variants or rewriter.cfg.retrieval != "expanded":
        return plan
    body = expand_query(plan.body, plan.query, [v.text for v in rewrite.variants], rewriter.cfg.variant_boost)
    return plan if body is None else replace(plan, body=body, retrieval="expanded")
