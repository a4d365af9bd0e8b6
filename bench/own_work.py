"""The sidecar's own work per reranked search: what is neither the cluster nor the model.

One process, no HTTP server: the demo corpus in osmem-server, a bi-encoder route (window 100,
fields title and text, no rewrite), and the cluster's real answer to a widened search of it
(100 hits with their sources). Each search then runs what the sidecar does on its event loop
around the model: the plan, the answer's JSON parsed, the window's texts, the request to the
model (a scorer that answers at once, with fixed scores: no model time, behind the score cache
of the default ``cache_size`` as a model entry is served), the decision, the page, the event
record and the page's JSON. Every search's query is new, so the cache misses and keeps each
pair, as it does for traffic of new queries. It prints the median microseconds per search of
each part and of the whole.

    python bench/own_work.py [--searches 2000] [--against REV] [--profile OUT]

``--against REV`` runs the same measurement on an earlier commit's code (a git worktree of it),
in turn with this one, and prints the ratio. ``--profile OUT`` writes a cProfile of this
code's searches (``python -m pstats OUT``), and with ``--against`` one of the other commit's
to ``OUT.before``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "sidecar" / "demo" / "corpus.jsonl"


def cluster_answer() -> tuple[bytes, list[str]]:
    """The cluster's answer to the widened search (100 hits with sources), as bytes; the words
    of the corpus."""
    import httpx
    from osmem_server import OsmemServer

    from sidecar.embedded import stop_embedded

    docs = [json.loads(line) for line in CORPUS.open(encoding="utf-8")]
    cluster = OsmemServer.start(japanese=False)
    try:
        lines = []
        for d in docs:
            source = {k: v for k, v in d.items() if k != "_id"}
            lines += [json.dumps({"index": {"_index": "kb", "_id": d["_id"]}}), json.dumps(source)]
        with httpx.Client(base_url=cluster.url, timeout=60) as c:
            ndjson = {"content-type": "application/x-ndjson"}
            c.post("/_bulk?refresh=true", content="\n".join(lines) + "\n", headers=ndjson).raise_for_status()
            body = {
                "from": 0,
                "size": 100,
                "query": {
                    "bool": {"must": [{"match_all": {}}], "should": [{"match": {"text": "gpu memory"}}]}
                },
            }
            r = c.post("/kb/_search", json=body)
            r.raise_for_status()
            content = r.content
    finally:
        stop_embedded(cluster)
    words = sorted({w.strip(".,:;()!?\"'").lower() for d in docs for w in d["text"].split()} - {""})
    return content, [w for w in words if w.isalpha() and len(w) > 3]


def measure(content: bytes, words: list[str], searches: int, profile: str | None) -> dict[str, float]:
    """Median microseconds per search of each part, with the code importable as ``sidecar``."""
    try:  # how the sidecar reads the cluster's answer (the standard library before it had its own)
        from sidecar.jsontext import loads
    except ImportError:
        loads = json.loads
    from sidecar.config import RouteConfig
    from sidecar.engine.circuit import CircuitBreaker
    from sidecar.engine.protocol import Scored, ScoreRequest
    from sidecar.engine.score_cache import CachedScorer
    from sidecar.engine.stats import BatchStats
    from sidecar.proxy.request import dumps
    from sidecar.search import record
    from sidecar.search.plan import plan_search
    from sidecar.search.rerank import finish
    from sidecar.search.snapshot import CompiledRoute, ServedModel

    class AtOnce:
        """A model that answers at once: fixed scores, so only the sidecar's work is timed."""

        name = "minilm"
        backend = None
        stats = BatchStats()

        async def score(self, request: ScoreRequest) -> list[Scored]:
            n = len(request.documents)
            return [Scored([((i * 7919) % 100) / 100 for i in range(n)], 0.0, 0.0) for _ in request.queries]

    config = RouteConfig(
        name="kb", indices=["kb"], model="minilm", window=100, fields=["title", "text"]
    )  # the default fusion, cuts and diagnostics
    scorer = CachedScorer(AtOnce(), 50_000)  # type: ignore[arg-type]
    model = ServedModel("minilm", scorer, CircuitBreaker("minilm", 0, 1.0), None)  # type: ignore[arg-type]
    compiled = CompiledRoute("kb", config, model, models={"minilm": model})
    parts: dict[str, list[float]] = {"plan": [], "parse": [], "rerank": [], "page json": []}

    async def one(i: int) -> None:
        q = f"{words[i % len(words)]} {words[(i * 31) % len(words)]} {words[(i * 17) % len(words)]} n{i}"
        body = {
            "size": 10,
            "query": {"bool": {"must": [{"match_all": {}}], "should": [{"match": {"text": q}}]}},
        }
        t0 = time.perf_counter()
        event = record.new_event("kb", {})
        plan = plan_search(config, body, (), {})
        t1 = time.perf_counter()
        response = loads(content)
        t2 = time.perf_counter()
        page, _ = await finish(compiled, plan, response, event)  # type: ignore[arg-type]
        t3 = time.perf_counter()
        dumps(page)
        t4 = time.perf_counter()
        for name, took in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[name].append(took * 1e6)

    async def run() -> None:
        for i in range(200):  # warm-up
            await one(i)
        for v in parts.values():
            v.clear()
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        for i in range(searches):
            await one(10_000 + i)
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)

    asyncio.run(run())
    out = {k: statistics.median(v) for k, v in parts.items()}
    out["whole"] = statistics.median(sum(x) for x in zip(*parts.values(), strict=True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--searches", type=int, default=2000)
    ap.add_argument(
        "--against", metavar="REV", help="also measure this git commit's code, in turn with this one"
    )
    ap.add_argument("--profile", help="write a cProfile of this code's searches here")
    ap.add_argument("--tree", help=argparse.SUPPRESS)  # measure the code of this checkout (--against)
    ap.add_argument("--answer", help=argparse.SUPPRESS)  # the cluster's answer, saved by the first run
    args = ap.parse_args()
    if args.tree:  # a child run: the other commit's code, the same answer
        sys.path.insert(0, args.tree)
        data = json.loads(Path(args.answer).read_text())
        print(json.dumps(measure(data["content"].encode(), data["words"], args.searches, args.profile)))
        return 0
    sys.path.insert(0, str(ROOT))
    content, words = cluster_answer()
    if not args.against:
        now = measure(content, words, args.searches, args.profile)
        print(f"{len(json.loads(content)['hits']['hits'])} hits, {len(content)} bytes; median µs a search")
        for k, v in now.items():
            print(f"{k:>10} {v:9.1f}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="rerank-own-"))
    tree = work / "against"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.against],
                       check=True, capture_output=True)  # fmt: skip
        answer = work / "answer.json"
        answer.write_text(json.dumps({"content": content.decode(), "words": words}))
        runs: dict[str, list[dict[str, float]]] = {"now": [], "before": []}
        for turn in range(3):  # in turn: drift hits both alike
            for name, code in (("now", ROOT), ("before", tree)):
                cmd = [sys.executable, __file__, "--tree", str(code), "--answer", str(answer),
                       "--searches", str(args.searches)]  # fmt: skip
                if args.profile and turn == 0:  # OUT for this code, OUT.before for the other
                    cmd += ["--profile", args.profile + ("" if name == "now" else ".before")]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=code)
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"median µs a search (the median of 3 runs each, {args.searches} searches a run)")
        print(f"{'':>10}{'now':>10}{'before':>10}{'now/before':>12}")
        for k in runs["now"][0]:
            a = statistics.median(r[k] for r in runs["now"])
            b = statistics.median(r[k] for r in runs["before"])
            print(f"{k:>10}{a:>10.1f}{b:>10.1f}{a / b:>12.2f}")
        return 0
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True
        )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
