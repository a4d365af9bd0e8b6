"""``rerank-sidecar judgments``: searches and clicks recorded by a real sidecar become a BEIR
folder that ``eval`` reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml
from osmem_server import OsmemServer

from sidecar.config import parse_config
from sidecar.eval.dataset import load_dataset
from testkit.users import click_event, minilm_config
from tests.conftest import CORPUS, RunningSidecar, index_corpus

INDEX = "judged"


def _config(upstream: str, sqlite: Path) -> dict[str, Any]:
    route = {"name": "kb", "indices": [INDEX], "model": "minilm", "window": 12, "fields": ["title", "text"]}
    return minilm_config(upstream, [route], events={"sqlite": str(sqlite)})


def _search(proxy: httpx.Client, text: str) -> tuple[str, list[str]]:
    body = {"query": {"match": {"text": text}}, "size": 5, "ext": {"ubi": {"client_id": "someone"}}}
    answer = proxy.post(f"/{INDEX}/_search", json=body).json()
    return answer["ext"]["ubi"]["query_id"], [h["_id"] for h in answer["hits"]["hits"]]


def _click(proxy: httpx.Client, query_id: str, ids: list[str], position: int) -> None:
    r = proxy.post("/ubi_events/_doc", json=click_event(query_id, "someone", ids[position], position))
    assert r.status_code == 201, r.text


def test_clicks_become_judgments_that_eval_reads(osmem: OsmemServer, tmp_path: Path) -> None:
    index_corpus(osmem.url, INDEX, CORPUS)
    sqlite = tmp_path / "events.sqlite"
    config = _config(osmem.url, sqlite)
    sidecar = RunningSidecar(parse_config(config))
    try:
        with httpx.Client(base_url=sidecar.url, timeout=30) as proxy:
            q1, memory = _search(proxy, "gpu memory")
            _click(proxy, q1, memory, 2)  # 0 and 1 skipped above it, 3 and 4 not judged
            q2, again = _search(proxy, "gpu  memory")  # the same query text
            assert again == memory
            _click(proxy, q2, again, 0)
            q3, returns = _search(proxy, "refund")
            _click(proxy, q3, returns, 0)
            _search(proxy, "java")  # no click: no judgment
    finally:
        sidecar.close()
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "judged"
    run = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "judgments", "--config", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "2 queries" in run.stdout and "from 4 searches and 3 clicks" in run.stdout
    dataset = load_dataset(out)
    by_text = {text: qid for qid, text in dataset.queries.items()}
    assert set(by_text) == {"gpu memory", "refund"}
    memory_grades = dataset.qrels[by_text["gpu memory"]]
    # hit 0: clicked once, skipped once (a tie goes to relevant); 1: skipped; 2: clicked
    assert memory_grades == {memory[0]: 1, memory[1]: 0, memory[2]: 1}
    assert dataset.qrels[by_text["refund"]] == {returns[0]: 1}
    docs = {d["_id"]: d for d in dataset.corpus()}
    assert docs[memory[2]]["title"] == CORPUS[int(memory[2])]["title"]
    assert docs[memory[2]]["text"] == CORPUS[int(memory[2])]["text"]
    assert "skip-above" in (out / "SOURCE.md").read_text()
    # eval reads the folder as any judged dataset
    report = tmp_path / "report.json"
    route = {**config, "routes": [{**config["routes"][0], "indices": ["judged-eval"]}]}
    (tmp_path / "kb.yaml").write_text(yaml.safe_dump(route))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "eval",
            str(out),
            "--config",
            str(tmp_path / "kb.yaml"),
            "--embedded",
            "--index",
            "judged-eval",
            "--quiet",
            "--no-cache",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    figures = json.loads(report.read_text())
    assert figures["queries"] == 2


def test_no_events_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump({"events": {"sqlite": str(tmp_path / "none.sqlite")}}))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "judgments",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and run.stderr.strip().endswith(
        "(set events.sqlite in the config, or --events)"
    )
