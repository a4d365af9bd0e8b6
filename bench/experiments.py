"""Online experiments proved with simulated users, and what an experiment costs a search.

A cascade click model over a judged dataset's qrels (``testkit/users.py``) drives searches
with UBI client ids and click events through a real sidecar in front of osmem-server
(all-MiniLM-L6-v2 on the CPU, window 20, fusion rrf). It prints:

1. interleaving, the cluster's BM25 order (control) against the reranked order
   (treatment): for each seed, the searches until the sign test first says significant
   (looked at every 10 searches), and the win rate then;
2. an A/A experiment (the same arm twice) over 20 seeds of a fixed number of searches:
   how many came out significant at the 5% level (1 expected; 4 or more happens 1.6% of
   the time by chance);
3. the cost: the same searches through a route with an interleaving experiment and through
   one without, interleaved pairs (a warm score cache, so the model's share is small), the
   median of the per-pair differences.

    python bench/experiments.py                                 # SciFact from ../shared/data
    python bench/experiments.py --data tests/data/scifact-slice --seeds 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.config import parse_config  # noqa: E402
from sidecar.eval.dataset import Dataset, load_dataset  # noqa: E402
from testkit.users import Session, experiment_route, minilm_config  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "scifact"


def _config(upstream: str, experiment: dict[str, Any]) -> dict[str, Any]:
    routes = [experiment_route("sim", experiment), experiment_route("sim-plain", None)]
    return minilm_config(upstream, routes, events={"buffer": 100})


def _index(url: str, name: str, dataset: Dataset) -> None:
    with httpx.Client(base_url=url, timeout=300) as c:
        c.delete(f"/{name}")
        mapping = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}}}
        c.put(f"/{name}", json={"mappings": mapping}).raise_for_status()
        lines: list[str] = []
        for doc in dataset.corpus():
            lines.append(json.dumps({"index": {"_index": name, "_id": doc["_id"]}}))
            lines.append(json.dumps({"title": doc["title"], "text": doc["text"]}))
            if len(lines) >= 2000:
                c.post(
                    "/_bulk",
                    content="\n".join(lines) + "\n",
                    headers={"content-type": "application/x-ndjson"},
                )
                lines = []
        if lines:
            c.post(
                "/_bulk", content="\n".join(lines) + "\n", headers={"content-type": "application/x-ndjson"}
            )
        c.post(f"/{name}/_refresh")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED if SHARED.is_dir() else ROOT / "tests/data/scifact-slice"))
    ap.add_argument("--seeds", type=int, default=5, help="interleaving runs (default 5)")
    ap.add_argument("--max-searches", type=int, default=2000, help="per interleaving run (default 2000)")
    ap.add_argument("--aa-seeds", type=int, default=20)
    ap.add_argument("--aa-searches", type=int, default=200, help="per A/A run (default 200)")
    ap.add_argument("--pairs", type=int, default=300, help="cost: searches per arm (default 300)")
    args = ap.parse_args()

    from osmem_server import OsmemServer

    from sidecar.embedded import stop_embedded
    from tests.conftest import RunningSidecar

    dataset = load_dataset(args.data)
    cluster = OsmemServer.start(japanese=False)
    try:
        for name in ("sim", "sim-plain"):
            _index(cluster.url, name, dataset)
        sidecar = RunningSidecar(parse_config(_config(cluster.url, {"name": "warm", "mode": "interleave"})))
        admin = httpx.Client(base_url=sidecar.admin_url, timeout=60)

        def experiment(spec: dict[str, Any]) -> None:
            admin.put("/_sidecar/config", json=_config(cluster.url, spec)).raise_for_status()

        print(
            f"{dataset.name}: {len(dataset.queries)} judged queries, {dataset.corpus_size()} documents;"
            " all-MiniLM-L6-v2 on CPU, window 20, fusion rrf; cascade users (testkit/users.py)"
        )
        with httpx.Client(base_url=sidecar.url, timeout=120) as proxy:
            session = Session(proxy, "sim", dataset.queries, dataset.qrels)
            t0 = time.perf_counter()
            for qid in sorted(dataset.queries):  # warm the score cache once
                proxy.post(
                    "/sim/_search", json={"query": {"match": {"text": dataset.queries[qid]}}, "size": 1}
                )
            print(f"  warm-up: {len(dataset.queries)} searches in {time.perf_counter() - t0:.0f} s")

            print("\n1. interleaving, cluster (BM25) against reranked: searches until significant at 5%")
            found = []
            for seed in range(args.seeds):
                name = f"better-{seed}"
                experiment({"name": name, "mode": "interleave"})
                figures: dict[str, Any] = {}
                done = 0
                while done < args.max_searches:
                    session.run(10, seed=seed * 100_000 + done)
                    done += 10
                    figures = admin.get(f"/_sidecar/experiments/{name}").json()
                    if figures["significant"]:
                        break
                at = figures["queries"] if figures.get("significant") else None
                found.append(at)
                print(
                    f"  seed {seed}: {at if at else f'not within {done}'} searches;"
                    f" {figures['wins']} wins, {figures['losses']} losses, {figures['ties']} ties,"
                    f" win rate {figures['win_rate']:.3f}"
                    f" [{figures['interval'][0]:.3f}, {figures['interval'][1]:.3f}],"
                    f" p {figures['p_value']:.4f}, better: {figures['better']}"
                )
            hits = [f for f in found if f]
            if hits:
                print(
                    f"  median {statistics.median(hits):.0f} searches (min {min(hits)}, max {max(hits)}),"
                    f" significant in {len(hits)}/{len(found)} runs"
                )

            print(f"\n2. A/A (the reranked arm twice): {args.aa_seeds} runs of {args.aa_searches} searches")
            significant = 0
            pvalues = []
            for seed in range(args.aa_seeds):
                name = f"aa-{seed}"
                experiment({"name": name, "mode": "interleave", "control": "route", "treatment": "route"})
                session.run(args.aa_searches, seed=10_000_000 + seed)
                figures = admin.get(f"/_sidecar/experiments/{name}").json()
                significant += bool(figures["significant"])
                pvalues.append(figures["p_value"])
            print(
                f"  significant at 5%: {significant} of {args.aa_seeds} ({significant / args.aa_seeds:.0%});"
                f" median p {statistics.median(p for p in pvalues if p is not None):.3f}"
            )

            print(f"\n3. cost: {args.pairs} interleaved pairs, experiment on (sim) and off (sim-plain)")
            experiment({"name": "cost", "mode": "interleave"})
            rng = random.Random(7)
            qids = sorted(dataset.queries)
            on: list[float] = []
            off: list[float] = []
            for n in range(args.pairs):
                text = dataset.queries[rng.choice(qids)]
                body = {
                    "query": {"match": {"text": text}},
                    "size": 10,
                    "ext": {"ubi": {"client_id": f"c{n}"}},
                }
                order = [("sim", on), ("sim-plain", off)] if n % 2 else [("sim-plain", off), ("sim", on)]
                for index, out in order:
                    t = time.perf_counter()
                    proxy.post(f"/{index}/_search", json=body).raise_for_status()
                    out.append((time.perf_counter() - t) * 1000)
            diffs = [a - b for a, b in zip(on, off, strict=True)]
            print(
                f"  p50 with the experiment {statistics.median(on):.2f} ms,"
                f" without {statistics.median(off):.2f} ms;"
                f" median per-pair difference {statistics.median(diffs):+.3f} ms"
                f" (ratio {statistics.median(on) / statistics.median(off):.3f})"
            )
        admin.close()
        sidecar.close()
    finally:
        stop_embedded(cluster)


if __name__ == "__main__":
    main()
