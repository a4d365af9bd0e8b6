"""``rerank-sidecar bench`` on this machine: the demo route's model, a few searches."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "bench",
            "--config",
            str(ROOT / "configs" / "demo.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bench_prints_latency_throughput_and_the_rate_that_fits(tmp_path: Path) -> None:
    r = _bench("--searches", "3", "--concurrency", "1,2")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"one search alone: p50 [\d.]+ ms, p99 [\d.]+ ms \(3 searches\)", out)
    rows = [ln.split() for ln in out.splitlines() if re.match(r"\s+[12]\s", ln)]
    assert [row[0] for row in rows] == ["1", "2"] and all(float(row[2]) > 0 for row in rows)
    assert re.search(r"highest rate inside timeout_ms at p99: [\d.]+ searches/s", out)
    assert "no CUDA device" in out  # this machine
    docs = tmp_path / "docs.txt"
    docs.write_text("first document\nsecond one\nthird\n")
    mine = _bench("--searches", "2", "--concurrency", "1", "--docs", str(docs))
    assert mine.returncode == 0 and "window 3" in mine.stdout  # the route's window holds what the file has
    assert _bench("--route", "nope").returncode == 2
