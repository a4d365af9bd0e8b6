"""``rerank-sidecar demo`` end to end, as a user runs it: a real process, real HTTP, Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
from opensearchpy import OpenSearch

from sidecar.demo.run import corpus


def test_demo_corpus_is_a_few_hundred_documents_across_topics() -> None:
    docs = list(corpus())
    assert len(docs) >= 200
    assert len({d["_id"] for d in docs}) == len(docs)
    assert len({d["topic"] for d in docs}) >= 6


def test_demo_serves_reranked_results_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        m = re.search(r"proxy:\s+(http://\S+)", text)
        assert m, text
        assert "curl" in text
        tui = re.search(
            r"rerank-sidecar tui --admin (http://\S+)", text
        )  # the TUI command for its admin port
        assert tui, text
        assert httpx.get(f"{tui.group(1)}/_sidecar/health", timeout=30).json()["status"] in ("ok", "degraded")
        client = OpenSearch(hosts=[m.group(1)])
        res = client.search(
            index="kb", body={"query": {"match": {"text": "which lora rank should I use"}}, "size": 3}
        )
        assert res["hits"]["hits"][0]["_source"]["title"] == "What LoRA rank to choose"
        assert all("_rerank" in h for h in res["hits"]["hits"])
        baseline = client.search(
            index="kb",
            body={"query": {"match": {"text": "which lora rank should I use"}}, "size": 3},
            headers={"X-Rerank": "off"},
        )
        assert [h["_id"] for h in baseline["hits"]["hits"]] != [h["_id"] for h in res["hits"]["hits"]]
        assert "X-Rerank-Explain: 1" in text
        vague = client.search(
            index="kb",
            body={"query": {"multi_match": {"query": "k8s pod OOM", "fields": ["title", "text"]}}, "size": 3},
            headers={"X-Rerank-Explain": "1"},
        )
        assert vague["_rerank"]["variants"] == [
            {"text": "Kubernetes pod out of memory", "rules": ["abbreviation:k8s", "abbreviation:OOM"]}
        ]
        assert "OOMKilled" in vague["hits"]["hits"][0]["_source"]["title"]
        # scores on one scale for every model: _score in [0, 1], falling down the page; a clear
        # query carries no diagnostic flag, a vague one is flagged low
        scores = [h["_score"] for h in res["hits"]["hits"]]
        assert all(0 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
        assert res["hits"]["max_score"] == scores[0]
        with httpx.Client(base_url=m.group(1), timeout=60) as http:
            for query, flagged in (
                ("which lora rank should I use", ""),
                ("k8s pod OOM", ""),
                ("how does it work", "low"),
                ("best pizza in naples", "low"),
            ):
                r = http.post("/kb/_search", json={"query": {"match": {"text": query}}})
                assert r.headers["x-rerank"] == "applied"
                assert (
                    (flagged in r.headers.get("x-rerank-flags", ""))
                    if flagged
                    else "x-rerank-flags" not in r.headers
                )
            # Chinese the rules leave Chinese goes in the cluster's order; 怎么重启 becomes "restart"
            assert "X-Rerank-Reason: language" in text and "怎么查看显卡温度" in text
            r = http.post("/kb/_search", json={"query": {"match": {"text": "怎么查看显卡温度"}}})
            assert r.headers["x-rerank"] == "bypass" and r.headers["x-rerank-reason"] == "language"
            r = http.post("/kb/_search", json={"query": {"match": {"text": "怎么重启"}}})
            assert r.headers["x-rerank"] == "applied"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
