"""The embedded default on a CPU under load: a concurrency curve beside the model's own ceiling.

osmem-server holds the demo corpus (210 documents); the sidecar (its own process, the packaged
all-MiniLM-L6-v2 on the CPU, a bi-encoder route: window 100, fields title and text, no rewrite)
has every document's embedding cached first. wrk sends a distinct query per request at 1, 4,
16 and 32 clients; each cell prints searches/s, p50 and p99, the median queue and model time
of its searches (from their events), the queries a forward pass carried, how many searches
fell back or erred, and the sidecar's own time in a search (its event's total less the
cluster, the queue and the model). The model's batched ceiling (32 queries of the same shape
in one forward, on the runtime and threads the sidecar uses) is measured in the same run.

    python bench/cpu_curve.py [--seconds 10] [--clients 1,4,16,32] [--against REV]

``--against REV`` also runs the sidecar of an earlier commit (a git worktree of it), interleaved
with this one, and prints the ratios. Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proxy_overhead import free_port, lua_str, run_wrk, stop, wait_http  # noqa: E402

INDEX = "kb"
CORPUS = ROOT / "sidecar" / "demo" / "corpus.jsonl"

# a distinct query per request over every document (match_all), so each search's window is full
# (100 of the 210 documents). "words" (the default): four words of the corpus that spell, as the
# digits of a number in base len(words), the run, the wrk thread and a counter: no cache holds
# it, and it is as long as a typed query (4-10 tokens). "tagged" (the shape of the first runs):
# three random words of the corpus, then a token "r<run>t<thread>n<counter>" that the tokenizer
# cuts into 7 pieces, which doubles the query's tokens.
LUA = """
local words = {{{words}}}
local made = 0
setup = function(thread)
  made = made + 1
  thread:set("tid", made)
end
init = function(args)
  math.randomseed({seed} * 1000 + tid)
  n = 0
end
local function word()
  return words[math.random(#words)]
end
local function spelled(k)
  local out = {{}}
  for i = 1, 4 do
    out[i] = words[(k % #words) + 1]
    k = math.floor(k / #words)
  end
  return table.concat(out, " ")
end
request = function()
  n = n + 1
  local q
  if "{shape}" == "words" then
    q = spelled(({seed} * 64 + tid) * 10000000 + n)
  else
    q = word() .. " " .. word() .. " " .. word() .. " r{seed}t" .. tid .. "n" .. n
  end
  local body = '{{"size": 10, "query": {{"bool": {{"must": [{{"match_all": {{}}}}], '
    .. '"should": [{{"match": {{"text": "' .. q .. '"}}}}]}}}}}}'
  return wrk.format("POST", "/{index}/_search", {{["Content-Type"] = "application/json"}}, body)
end
"""


def index_corpus(url: str) -> tuple[list[str], list[str]]:
    """The demo corpus in the cluster; its ids and its words (for the queries)."""
    docs = [json.loads(line) for line in CORPUS.open(encoding="utf-8")]
    lines = []
    for d in docs:
        source = {k: v for k, v in d.items() if k != "_id"}
        lines += [json.dumps({"index": {"_index": INDEX, "_id": d["_id"]}}), json.dumps(source)]
    with httpx.Client(base_url=url, timeout=60) as c:
        ndjson = {"content-type": "application/x-ndjson"}
        r = c.post("/_bulk", content="\n".join(lines) + "\n", headers=ndjson)
        r.raise_for_status()
        if r.json().get("errors"):
            raise SystemExit(f"the corpus was not indexed: {r.text[:300]}")
        c.post(f"/{INDEX}/_refresh").raise_for_status()
        if c.get(f"/{INDEX}/_count").json()["count"] != len(docs):
            raise SystemExit("the corpus was not indexed whole")
    words = sorted({w.strip(".,:;()!?\"'").lower() for d in docs for w in d["text"].split()} - {""})
    return [d["_id"] for d in docs], [w for w in words if w.isalpha() and len(w) > 3]


def sidecar_config(port: int, admin: int, cluster: str, threads: int | None = None) -> dict[str, Any]:
    model = {} if threads is None else {"threads": threads}  # an older sidecar knows no such key
    return {
        "listen": f"127.0.0.1:{port}",
        "upstream": {"url": cluster, "timeout_s": 30},
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "log_level": "warning",
        "events": {"buffer": 20_000},
        "models": {
            "minilm": {
                "backend": "bi-encoder",
                "model": "all-MiniLM-L6-v2",
                "device": "cpu",
                **model,
            }
        },
        "routes": [
            {
                "indices": [INDEX],
                "model": "minilm",
                "window": 100,
                "fields": ["title", "text"],
                "timeout_ms": 30_000,
            }
        ],
    }


def warm(url: str, ids: list[str]) -> None:
    """Every document through the model once: its embedding is cached for the runs."""
    with httpx.Client(base_url=url, timeout=120) as c:
        for i in range(0, len(ids), 100):
            body = {
                "size": 100,
                "query": {"ids": {"values": ids[i : i + 100]}},
                "ext": {"rerank": {"query_context": {"query_text": "warm up"}}},
            }
            r = c.post(f"/{INDEX}/_search", json=body)
            r.raise_for_status()
            assert r.headers.get("x-rerank") == "applied", r.headers


def events_between(admin: str, since: float, until: float) -> list[dict[str, Any]]:
    r = httpx.get(f"{admin}/_sidecar/events", params={"limit": 10_000}, timeout=120)
    r.raise_for_status()
    return [e for e in r.json()["events"] if since <= e["time"] <= until]


def forwards(admin: str) -> tuple[float, float] | None:
    """(forward passes, queries embedded) of the model so far, where the sidecar says them."""
    model = httpx.get(f"{admin}/_sidecar/health", timeout=30).json().get("models", {}).get("minilm", {})
    if "forwards" not in model:
        return None
    return float(model["forwards"]), float(model["forward_queries"])


def spelled(words: list[str], k: int) -> str:
    """The "words" query of number ``k``, as the wrk script spells it."""
    out = []
    for _ in range(4):
        out.append(words[k % len(words)])
        k //= len(words)
    return " ".join(out)


def ceiling(config: dict[str, Any], words: list[str], seconds: float, shape: str) -> float:
    """The model's own batched rate, as the sidecar runs it (its runtime and threads): 32
    distinct queries of the runs' shape in one forward, queries/s."""
    from sidecar.config import model_entry
    from sidecar.engine.registry import build_backend

    model = build_backend("minilm", model_entry(config["models"]["minilm"]))  # type: ignore[arg-type]
    embed = model.embed  # type: ignore[attr-defined]
    n, started, i = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        if shape == "words":
            embed([spelled(words, 10_000_000 * j + i) for j in range(32)])
        else:
            embed([f"{words[(i + j) % len(words)]} {words[j]} {words[-j]} r0t{j}n{i}" for j in range(32)])
        n += 32
        i += 1
    return n / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    ap.add_argument("--clients", default="1,4,16,32")
    ap.add_argument("--against", metavar="REV", help="also run the sidecar of this git commit, side by side")
    ap.add_argument(
        "--profile",
        type=Path,
        help="record this sidecar with py-spy (raw, all threads) at --profile-at clients",
    )
    ap.add_argument(
        "--threads", type=int, help="the model's ONNX Runtime threads in this sidecar (default: its own)"
    )
    ap.add_argument(
        "--queries",
        choices=["words", "tagged"],
        default="words",
        help="the queries' shape: four corpus words (default) or three and a run token (7 more tokens)",
    )
    ap.add_argument("--profile-at", type=int, help="the clients of the profiled run (default: the most)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    from osmem_server import OsmemServer

    from sidecar.embedded import stop_embedded

    work = Path(tempfile.mkdtemp(prefix="rerank-curve-"))
    procs: list[subprocess.Popen[bytes]] = []
    cluster = OsmemServer.start(japanese=False)
    trees: list[Path] = []
    try:
        ids, words = index_corpus(cluster.url)
        runs = iter(range(1, 1_000_000))

        def script() -> Path:  # a new one per wrk run: its queries were never asked before
            path = work / "search.lua"
            lua = LUA.format(
                words=",".join(lua_str(w) for w in words), index=INDEX, seed=next(runs), shape=args.queries
            )
            path.write_text(lua)
            return path

        targets: dict[str, tuple[str, str]] = {}
        for name, rev in [("now", None), ("before", args.against)]:
            if name == "before" and rev is None:
                continue
            port, admin = free_port(), free_port()
            threads = args.threads if name == "now" else None
            (work / f"{name}.yaml").write_text(json.dumps(sidecar_config(port, admin, cluster.url, threads)))
            cwd, env = ROOT, dict(os.environ)
            if rev is not None:
                tree = work / "against"
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                    check=True,
                    capture_output=True,
                )
                trees.append(tree)
                cwd, env = tree, {**env, "PYTHONPATH": str(tree)}
            cmd = [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(work / f"{name}.yaml")]
            procs.append(subprocess.Popen(cmd, cwd=cwd, env=env))
            targets[name] = (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
        for url, admin in targets.values():
            wait_http(admin + "/_sidecar/health", 300)
            warm(url, ids)
        direct = run_wrk(cluster.url, script(), 1, 2)
        rate = ceiling(sidecar_config(0, 0, cluster.url, args.threads), words, 5.0, args.queries)
        rows = []
        levels = [int(c) for c in args.clients.split(",")]
        for clients in levels:
            for name, (url, admin) in targets.items():  # interleaved: drift hits both alike
                run_wrk(url, script(), clients, 1)  # warm-up
                before = forwards(admin)
                since = time.time()
                spy = None
                if args.profile and name == "now" and clients == (args.profile_at or max(levels)):
                    spy = subprocess.Popen(
                        ["py-spy", "record", "-f", "raw", "-o", str(args.profile), "-p", str(procs[0].pid),
                         "-d", str(args.seconds), "-r", "100", "--threads", "--idle"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                r = run_wrk(url, script(), clients, args.seconds)
                if spy is not None:
                    spy.wait(60)
                until = time.time()
                after = forwards(admin)
                events = events_between(admin, since, until)
                applied = [e for e in events if e["status"] == "applied"]
                other = len(events) - len(applied)
                queue = [
                    e["timings"]["queue_ms"] for e in applied if e["timings"].get("queue_ms") is not None
                ]
                model = [
                    e["timings"]["model_ms"] for e in applied if e["timings"].get("model_ms") is not None
                ]
                window = statistics.median(len(e["baseline"]) for e in applied) if applied else None
                # the sidecar's own time in a search: all of it but the cluster, the queue, the model
                own = [
                    e["timings"]["total_ms"]
                    - e["timings"].get("upstream_ms", 0)
                    - (e["timings"].get("queue_ms") or 0)
                    - (e["timings"].get("model_ms") or 0)
                    for e in applied
                    if e["timings"].get("total_ms") is not None
                ]
                per_forward = None
                if before is not None and after is not None and after[0] > before[0]:
                    per_forward = (after[1] - before[1]) / (after[0] - before[0])
                rows.append(
                    (
                        clients,
                        name,
                        r,
                        statistics.median(queue) if queue else None,
                        statistics.median(model) if model else None,
                        per_forward,
                        other + int(r["non2xx"] + r["socket_errors"]),
                        window,
                        statistics.median(own) if own else None,
                    )
                )
        print()
        print(f"cluster alone, 1 client: p50 {direct['p50']:.2f} ms, {direct['rps']:.0f} searches/s")
        print(f"the model's batched ceiling (32 queries a forward): {rate:.0f} queries/s")
        print(f"wrk runs of {args.seconds} s, a distinct query per request ({args.queries})")
        print(
            f"{'clients':>7}{'sidecar':>9}{'search/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'queue ms':>10}{'model ms':>10}{'q/forward':>11}{'of ceiling':>11}{'not applied':>13}"
            f"{'window':>8}{'own ms':>8}"
        )

        def fmt(v: float | None, spec: str) -> str:
            return "–" if v is None else format(v, spec)

        for clients, name, r, q, m, pf, bad, window, own_ms in rows:
            print(
                f"{clients:>7}{name:>9}{r['rps']:>10.1f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
                f"{fmt(q, '.1f'):>10}{fmt(m, '.1f'):>10}{fmt(pf, '.1f'):>11}"
                f"{r['rps'] / rate:>11.2f}{bad:>13}{fmt(window, '.0f'):>8}{fmt(own_ms, '.2f'):>8}"
            )
        if args.against:
            print()
            by = {(c, n): r for c, n, r, *_ in rows}
            for clients in sorted({c for c, *_ in rows}):
                now, old = by[(clients, "now")], by[(clients, "before")]
                print(
                    f"{clients:>3} clients: searches/s now/before {now['rps'] / old['rps']:.2f}x,"
                    f" p50 now/before {now['p50'] / old['p50']:.2f}"
                )
        return 0
    finally:
        stop(procs)
        stop_embedded(cluster)
        for tree in trees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
