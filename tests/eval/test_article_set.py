"""The article-style test set: its shape, its source, and the rules file written with it."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.eval.dataset import load_dataset
from sidecar.rewrite.load import compile_rewriters

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "data"


def _chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_each_half_is_30_groups_of_3_to_5_with_one_right_answer(split: str) -> None:
    ds = load_dataset(DATA / f"article-{split}")
    assert len(ds.queries) == 30
    docs = list(ds.corpus())
    per_group = Counter(d["group"] for d in docs)
    for q in ds.queries:
        group = ds.metadata[q]["group"]
        assert 3 <= per_group[group] <= 5
        assert list(ds.qrels[q]) == [f"{group}-0"] and ds.qrels[q][f"{group}-0"] == 1
        if ds.metadata[q]["kind"] == "vague":
            assert ds.metadata[q]["context"]
    kinds = Counter(m["kind"] for m in ds.metadata.values())
    assert set(kinds) == {"long-tail", "two-senses", "vague"} and min(kinds.values()) >= 9
    languages = Counter(_chinese(t) for t in ds.queries.values())
    assert languages[True] >= 10 and languages[False] >= 10
    # the right answer is not always stored first within its group
    first = {}
    for d in docs:
        first.setdefault(d["group"], d["_id"])
    assert sum(v.endswith("-0") for v in first.values()) < 20


def test_the_folders_are_what_the_source_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("article_groups", DATA / "article_groups.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(tmp_path)
    for split in ("article-dev", "article-test"):
        for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
            assert (tmp_path / split / name).read_bytes() == (DATA / split / name).read_bytes(), (split, name)


def test_the_rules_file_makes_variants_for_most_queries() -> None:
    config = load_config(ROOT / "configs" / "eval" / "article-rewrite.yaml")
    rewriter = compile_rewriters(config, ROOT / "configs" / "eval")[0]
    assert rewriter is not None
    rewritten = 0
    for split in ("dev", "test"):
        for line in (DATA / f"article-{split}" / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            rewritten += bool(rewriter.rewrite(q["text"], q["metadata"].get("context")).variants)
    assert rewritten >= 55  # of 60: the vocabulary covers the set, as a site's own list would
