"""Three sidecar processes with and without the shared score cache (a real redis-server or
valkey-server on loopback): the fleet-wide cache hit rate, and throughput and p50 per replica,
for the same repeated query mix sent round the replicas.

    python bench/fleet.py                       # 3 replicas, 4 clients, 20 s per phase
    python bench/fleet.py --clients 4 --seconds 10

The query mix: the titles of the demo corpus's 210 documents, drawn with a Zipf-like skew (a
few queries are frequent, most are rare), every search to the next replica (a load balancer's
round robin). all-MiniLM-L6-v2 on the CPU, window 20; the replicas, the cluster and the load
share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.fleet import CacheServer, Fleet  # noqa: E402
from testkit.users import minilm_config  # noqa: E402

INDEX = "fleet-bench"


async def _load(
    fleet: Fleet, queries: list[str], weights: list[float], clients: int, seconds: float
) -> dict[int, list[float]]:
    latencies: dict[int, list[float]] = {i: [] for i in range(len(fleet.urls))}
    counter = 0
    deadline = time.monotonic() + seconds

    async def client(seed: int) -> None:
        nonlocal counter
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=60) as http:
            while time.monotonic() < deadline:
                replica = counter % len(fleet.urls)
                counter += 1
                text = rng.choices(queries, weights)[0]
                body = {"query": {"match": {"text": text}}, "size": 10}
                t = time.perf_counter()
                r = await http.post(f"{fleet.urls[replica]}/{INDEX}/_search", json=body)
                r.raise_for_status()
                latencies[replica].append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()

    from osmem_server import OsmemServer

    from sidecar.demo.run import corpus, load_corpus
    from sidecar.embedded import stop_embedded

    queries = [d["title"] for d in corpus()]
    weights = [1 / (i + 1) for i in range(len(queries))]
    random.Random(1).shuffle(weights)
    cluster = OsmemServer.start(japanese=False)
    rows: list[tuple[str, float | None, list[tuple[int, float, float]]]] = []
    try:
        load_corpus(cluster.url, INDEX)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for label in ("own LRU only", "shared tier"):
                cache = CacheServer(folder) if label == "shared tier" else None
                cache_url = cache.url if cache is not None else None
                route = {"indices": [INDEX], "model": "minilm", "window": 20, "fields": ["title", "text"]}
                extra: dict[str, Any] = {"log_level": "warning", "events": {"buffer": 100}}
                if cache_url:
                    extra["cache"] = {"url": cache_url}
                phase = folder / label.replace(" ", "-")
                phase.mkdir()
                try:
                    with Fleet(minilm_config(cluster.url, [route], **extra), args.replicas, phase) as fleet:
                        latencies = asyncio.run(_load(fleet, queries, weights, args.clients, args.seconds))
                        per = [
                            (i, len(v) / args.seconds, statistics.median(v) if v else float("nan"))
                            for i, v in latencies.items()
                        ]
                        rows.append((label, fleet.cache_hit_rate(), per))
                finally:
                    if cache is not None:
                        cache.stop()
    finally:
        stop_embedded(cluster)
    print(
        f"{args.replicas} replicas, {args.clients} clients, {args.seconds:.0f} s per phase,"
        f" {len(queries)} distinct queries (Zipf-like mix), round robin; MiniLM on CPU, window 20"
    )
    print(
        f"  {'':<14} {'hit rate':>9}  "
        + "  ".join(f"replica {i}: searches/s, p50 ms" for i in range(args.replicas))
    )
    for label, rate, per in rows:
        cells = "  ".join(f"{qps:>10.1f} {p50:>8.1f}          " for _, qps, p50 in per)
        total = sum(q for _, q, _ in per)
        shown = f"{rate:.3f}" if rate is not None else "–"
        print(f"  {label:<14} {shown:>9}  {cells} total {total:.1f}/s")
    own_per, shared_per = rows[0][2], rows[1][2]
    ratio = sum(q for _, q, _ in shared_per) / sum(q for _, q, _ in own_per)
    print(f"  throughput shared/own: {ratio:.2f}")


if __name__ == "__main__":
    main()
