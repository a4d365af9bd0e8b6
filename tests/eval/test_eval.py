"""``rerank-sidecar eval`` through a real osmem-server and real sidecars."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from osmem_server import OsmemServer

from sidecar.eval.command import evaluate_settings, table
from sidecar.eval.dataset import load_dataset

SLICE = Path(__file__).resolve().parents[1] / "data" / "scifact-slice"


class Oracle:
    """Scores each document by its judged grade for the query: a perfect reranker."""

    name = "oracle"

    def __init__(self) -> None:
        ds = load_dataset(SLICE)
        self.qid = {text: q for q, text in ds.queries.items()}
        # the sidecar cleans and cuts document text: the beginning identifies a document
        self.doc = {" ".join(f"{d['title']} {d['text']}".split())[:300]: d["_id"] for d in ds.corpus()}
        self.qrels = ds.qrels

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        judged = self.qrels[self.qid[query]]
        return [float(judged.get(self.doc[" ".join(d.split())[:300]], 0)) for d in documents]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def warm_up(self) -> None:
        return None


def write_config(folder: Path, name: str, model: dict[str, Any], **route: Any) -> Path:
    path = folder / f"{name}.yaml"
    data = {
        "models": {"m": model},
        "routes": [{"indices": ["*"], "model": "m", "fields": ["title", "text"], "window": 100, **route}],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def args(**kw: Any) -> argparse.Namespace:
    base: dict[str, Any] = {
        "dataset": str(SLICE),
        "config": [],
        "index": None,
        "embedded": False,
        "json": None,
        "plot": False,
        "concurrency": 4,
        "query": None,
        "mapping": None,
        "cache": None,
        "no_cache": True,
        "quiet": True,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def test_an_oracle_reaches_ndcg_1_and_the_report_is_complete(osmem: OsmemServer, tmp_path: Path) -> None:
    oracle = write_config(tmp_path, "oracle", {"backend": "bi-encoder", "model": "unused"}, fusion="replace")
    cfg = yaml.safe_load(oracle.read_text())
    cfg["upstream"] = {"url": osmem.url}
    oracle.write_text(yaml.safe_dump(cfg))
    report = evaluate_settings(args(config=[str(oracle)], index="slice-oracle"), backends={"m": Oracle()})
    assert report["indexed"] is True and report["queries"] == 12
    base, setting = report["baseline"], report["settings"]["oracle"]
    assert base["recall@100"] == 1.0  # every judged document is among the candidates
    assert setting["ndcg@10"] == 1.0 and setting["mrr@10"] == 1.0 and setting["hit@1"] == 1.0
    assert setting["outcomes"] == {"applied": 12}
    assert setting["improved"] + setting["hurt"] + setting["unchanged"] == pytest.approx(1.0)
    assert setting["hurt"] == 0.0
    for key in ("ndcg@10", "mrr@10", "recall@100", "hit@1", "p50_ms", "p95_ms"):
        assert key in base and key in setting
    assert set(setting["per_query"]) == set(load_dataset(SLICE).queries)
    assert "oracle" in table(report) and "baseline (cluster)" in table(report)
    # the second run finds the index already holding the corpus and gives the same figures
    again = evaluate_settings(args(config=[str(oracle)], index="slice-oracle"), backends={"m": Oracle()})
    assert again["indexed"] is False
    for key in ("ndcg@10", "mrr@10", "recall@100", "hit@1"):
        assert again["baseline"][key] == base[key] and again["settings"]["oracle"][key] == setting[key]


def test_the_command_end_to_end_with_the_packaged_minilm(tmp_path: Path) -> None:
    plain = write_config(
        tmp_path, "minilm", {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}
    )
    rrf = write_config(
        tmp_path,
        "minilm-rrf",
        {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"},
        fusion="rrf",
    )
    out = tmp_path / "report.json"
    store = tmp_path / "emb.sqlite"
    cmd = [sys.executable, "-m", "sidecar.cli", "eval", str(SLICE), "--embedded", "--config", str(plain)]
    cmd += ["--config", str(rrf), "--json", str(out), "--plot", "--cache", str(store), "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "NDCG@10" in first.stdout and "minilm-rrf" in first.stdout and "per query" in first.stdout
    report = json.loads(out.read_text())
    assert set(report) >= {"baseline", "settings"} and set(report["settings"]) == {"minilm", "minilm-rrf"}
    assert store.stat().st_size > 0  # document embeddings are kept
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    again = json.loads(out.read_text())
    for name in ("minilm", "minilm-rrf"):
        for key in ("ndcg@10", "mrr@10", "recall@100", "hit@1"):
            assert again["settings"][name][key] == report["settings"][name][key]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--index", "x", "--config", "{cfg_nocover}"], "no route covers index 'x'"),
        (["--config", "{cfg}", "--query", "/nope.json"], "--query /nope.json: No such file"),
    ],
)
def test_bad_runs_exit_2_with_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    cfg = write_config(tmp_path, "c", {"backend": "bi-encoder", "model": "unused"})
    nocover = tmp_path / "nocover.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["routes"][0]["indices"] = ["other"]
    nocover.write_text(yaml.safe_dump(data))
    filled = [e.format(cfg=cfg, cfg_nocover=nocover) for e in extra]
    r = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "eval", str(SLICE), "--embedded", "--quiet", *filled],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "eval", str(tmp_path / "none"), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "not a folder" in missing.stderr
