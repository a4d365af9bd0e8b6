"""Retrieval metrics from trec_eval (through pytrec_eval): NDCG@10, MRR@10, Recall@100, Hit@1."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

import pytrec_eval

METRICS = ("ndcg@10", "mrr@10", "recall@100", "hit@1")


def _as_run(ranked: Sequence[str], depth: int) -> dict[str, float]:
    # trec_eval orders by score (ties by document id): scores from the rank keep our order exactly
    docs = list(dict.fromkeys(ranked))[:depth]
    return {d: float(len(docs) - i) for i, d in enumerate(docs)}


def evaluate(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Per query, the four metrics of a ranked list of document ids (a query with no
    results scores 0). Judgments of grade 1 or more count as relevant."""
    qrels = {q: dict(j) for q, j in qrels.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100", "success_1"})
    top10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    placeholder = {"\x00none": 0.0}  # trec_eval skips queries without a run; an empty list scores 0
    run_full = {q: _as_run(runs.get(q, []), 100) or placeholder for q in qrels}
    run_top = {q: _as_run(runs.get(q, []), 10) or placeholder for q in qrels}
    a, b = full.evaluate(run_full), top10.evaluate(run_top)
    return {
        q: {
            "ndcg@10": a[q]["ndcg_cut_10"],
            "mrr@10": b[q]["recip_rank"],
            "recall@100": a[q]["recall_100"],
            "hit@1": a[q]["success_1"],
        }
        for q in qrels
    }


def mean(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the queries, rounded to 4 places."""
    return {m: round(statistics.fmean(r[m] for r in per_query.values()), 4) for m in METRICS}
