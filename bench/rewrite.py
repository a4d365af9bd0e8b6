"""Query rewriting: its cost per query, its scaling with query length, and what it does to a search.

1. Rules: microseconds per query with the demo rules (configs/rules/tech.yaml), English and Chinese.
2. Linear matching: a pattern that backtracks exponentially under Python's ``re`` on RE2 (what
   the sidecar uses) against ``re`` itself, by query length.
3. End to end on the demo corpus: a real osmem-server, the sidecar with the packaged
   all-MiniLM-L6-v2, the same vague queries searched through a route that reranks without
   rewriting (baseline) and one that rewrites with the demo rules: top-1 right (judged by hand
   below: a small smoke set on our own corpus, not a quality benchmark), p50 search latency.

    python bench/rewrite.py
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.config import load_config, parse_config  # noqa: E402
from sidecar.patterns import compile_pattern  # noqa: E402
from sidecar.rewrite.load import compile_rewriters  # noqa: E402

# query -> documents of the demo corpus that answer it (read by hand)
JUDGED = {
    "k8s pod OOM": {"errors-014", "k8s-104", "k8s-103", "k8s-123"},
    "怎么重启pod": {"k8s-115", "k8s-101"},
    "how do I restart a deployment": {"k8s-101"},
    "what is a PDB": {"k8s-117"},
    "HPA": {"k8s-107"},
    "PVC": {"k8s-116"},
    "LoRA rank多少合适": {"lora-125", "lora-147", "lora-130"},
    "QLoRA on one card": {"lora-128"},
    "微调 LoRA 学习率": {"lora-131"},
    "显存不够怎么办": {"gpu-025", "gpu-031", "gpu-032", "gpu-039", "gpu-047", "gpu-051"},
    "pytorh memory fragmentation": {"gpu-027"},
    "fp16 activation memory": {"gpu-031"},
}


def rules_cost() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    rewriter = compile_rewriters(config, ROOT / "configs")[0]
    assert rewriter is not None
    queries = list(JUDGED)
    for q in queries[:3]:
        rewriter.rewrite(q)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        for q in queries:
            rewriter.rewrite(q)
    per = (time.perf_counter() - start) / (n * len(queries)) * 1e6
    print(f"rules: {per:.0f} us per query ({len(queries)} demo queries, {n} rounds)\n")


def scaling() -> None:
    pattern, template = r"^(a+)+$", "x"
    ours = compile_pattern(pattern, template)
    theirs = re.compile(pattern)
    print("pattern ^(a+)+$ on 'a' * n + '!'   RE2 (ours)   Python re    ratio")
    for n in (16, 20, 22, 24, 1_000, 100_000):
        text = "a" * n + "!"
        t0 = time.perf_counter()
        ours.sub(text)
        t_ours = time.perf_counter() - t0
        if n <= 24:
            t0 = time.perf_counter()
            theirs.sub(template, text)
            t_re = time.perf_counter() - t0
            ratio = t_re / t_ours
            print(f"  n={n:<8}                 {t_ours * 1e3:9.3f} ms {t_re * 1e3:9.1f} ms {ratio:8.0f}x")
        else:
            print(f"  n={n:<8}                 {t_ours * 1e3:9.3f} ms  (2^n steps: not run)")
    print()


def end_to_end() -> None:
    from osmem_server import OsmemServer

    from sidecar.demo.run import load_corpus
    from sidecar.embedded import stop_embedded
    from tests.conftest import RunningSidecar

    base = load_config(ROOT / "configs" / "demo.yaml").model_dump(mode="json")
    route = base["routes"][0]
    plain = {**route, "name": "plain", "indices": ["plain"], "rewrite": None}
    rewriting = {**route, "name": "rewrite", "indices": ["rewrite"]}
    data: dict[str, Any] = {
        **base,
        "listen": "127.0.0.1:0",
        "admin": {"listen": "127.0.0.1:0"},
        "routes": [plain, rewriting],
    }
    cluster = OsmemServer.start(japanese=False)
    try:
        for index in ("plain", "rewrite"):
            load_corpus(cluster.url, index)
        data["upstream"] = {"url": cluster.url}
        sidecar = RunningSidecar(parse_config(data), config_path=ROOT / "configs" / "demo.yaml")
        try:
            rows = []
            with httpx.Client(base_url=sidecar.url, timeout=60) as c:
                for index in ("plain", "rewrite"):  # warm up the model and the code paths
                    c.post(f"/{index}/_search", json={"query": {"match": {"text": "warm up"}}})
                for label, index in (("rerank only", "plain"), ("rewrite + rerank", "rewrite")):
                    cold: list[float] = []
                    warm: list[float] = []
                    right, variants, missed = 0, 0, []
                    for round_ in range(3):
                        for query, answers in JUDGED.items():
                            body = {"query": {"multi_match": {"query": query, "fields": ["title", "text"]}}}
                            t0 = time.perf_counter()
                            r = c.post(f"/{index}/_search", json={**body, "size": 3})
                            (warm if round_ else cold).append((time.perf_counter() - t0) * 1000)
                            if round_ == 0:
                                hits = r.json()["hits"]["hits"]
                                ok = bool(hits) and hits[0]["_id"] in answers
                                right += ok
                                missed += [] if ok else [query]
                                variants += int(r.headers.get("x-rerank-variants", "0"))
                    p50s = statistics.median(cold), statistics.median(warm)
                    rows.append((label, right, variants, *p50s, missed))
            print(f"end to end: {len(JUDGED)} judged demo queries, all-MiniLM-L6-v2 on CPU, window 100")
            head = f"  {'setting':<18} {'top-1 right':>12} {'variants':>9} {'p50 ms':>8} {'p50 cached':>11}"
            print(head + "  missed")
            for label, right, variants, cold_p50, warm_p50, missed in rows:
                print(
                    f"  {label:<18} {right:>7}/{len(JUDGED):<4} {variants:>9}"
                    f" {cold_p50:>8.1f} {warm_p50:>11.1f}"
                    f"  {', '.join(missed)}"
                )
            cold_ratio, warm_ratio = rows[1][3] / rows[0][3], rows[1][4] / rows[0][4]
            print(f"  ratio p50 rewrite/plain: {cold_ratio:.2f} (cached {warm_ratio:.2f})")
        finally:
            sidecar.close()
    finally:
        stop_embedded(cluster)


if __name__ == "__main__":
    rules_cost()
    scaling()
    end_to_end()
