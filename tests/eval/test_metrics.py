"""Metrics against hand computation on a toy qrels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sidecar.eval.dataset import DatasetError, load_dataset
from sidecar.eval.metrics import evaluate, mean


def test_metrics_equal_hand_computed_values() -> None:
    qrels = {"q1": {"a": 2, "b": 1, "z": 1}, "q2": {"c": 1}, "q3": {"d": 1}}
    runs = {"q1": ["b", "x", "a"], "q2": ["x", "y", "c"], "q3": []}
    per = evaluate(qrels, runs)
    # q1, trec_eval's gains (the grade itself): b=1 at rank 1, a=2 at rank 3; ideal a, b, z
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert per["q1"]["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert per["q1"]["mrr@10"] == 1.0 and per["q1"]["hit@1"] == 1.0
    assert per["q1"]["recall@100"] == pytest.approx(2 / 3)
    assert per["q2"]["mrr@10"] == pytest.approx(1 / 3) and per["q2"]["hit@1"] == 0.0
    assert per["q2"]["ndcg@10"] == pytest.approx(1 / math.log2(4))
    assert per["q3"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0, "hit@1": 0.0}  # no results
    # MRR@10 ignores a first relevant hit past rank 10
    late = evaluate({"q": {"r": 1}}, {"q": [f"x{i}" for i in range(10)] + ["r"]})["q"]
    assert late["mrr@10"] == 0.0 and late["recall@100"] == 1.0
    # ties cannot reorder a list: the rank order is the run's
    assert evaluate({"q": {"b": 1}}, {"q": ["a", "b"]})["q"]["hit@1"] == 0.0
    m = mean(per)
    assert m["hit@1"] == pytest.approx(1 / 3, abs=1e-4)


def test_dataset_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"qrels\.tsv is missing"):
        (tmp_path / "corpus.jsonl").write_text("")
        (tmp_path / "queries.jsonl").write_text("")
        load_dataset(tmp_path)
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DatasetError, match=r"qrels.tsv:2: expected query-id, corpus-id, score"):
        load_dataset(tmp_path)
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\nnot json\n')
    with pytest.raises(DatasetError, match=r"queries.jsonl:2: not JSON"):
        load_dataset(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q9", "text": "x"}\n')
    with pytest.raises(DatasetError, match=r"no query in queries\.jsonl has judgments"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "nope")
