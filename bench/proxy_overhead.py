"""What the sidecar's pass-through costs, side by side with direct access and nginx.

Starts osmem-server with the SciFact corpus, nginx (keepalive to the upstream) and the
sidecar (``rerank-sidecar serve`` in its own process), then drives each with wrk:
``GET /{index}/_doc/{id}`` and a bypassed BM25 search, at 1 and 8 connections.
Prints p50/p99 latency and throughput per target and the ratios against the anchors.

    python bench/proxy_overhead.py [--data ../shared/data/scifact] [--seconds 5] [--against REV]
        [--traced RATIO]

``--against REV`` also runs the sidecar of an earlier commit (a git worktree of it), interleaved
with the others, and prints the current sidecar's figures against it. ``--traced RATIO`` adds a
sidecar of this commit with tracing on (that share of the requests sampled, to a local OTLP sink).

Needs wrk and nginx (Debian: apt-get install wrk nginx-light).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.data import dataset  # noqa: E402

INDEX = "scifact"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in {timeout:.0f} s")


def load_scifact(url: str, data: Path) -> tuple[list[str], list[str]]:
    mappings = {
        "properties": {
            "title": {"type": "text", "analyzer": "english"},
            "text": {"type": "text", "analyzer": "english"},
        }
    }
    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=120) as c:
        c.put(f"/{INDEX}", json={"mappings": mappings}).raise_for_status()
        batch: list[str] = []
        with (data / "corpus.jsonl").open(encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                ids.append(doc["_id"])
                batch += [
                    json.dumps({"index": {"_index": INDEX, "_id": doc["_id"]}}),
                    json.dumps({"title": doc["title"], "text": doc["text"]}),
                ]
                if len(batch) >= 2000:
                    c.post(
                        "/_bulk",
                        content="\n".join(batch) + "\n",
                        headers={"content-type": "application/x-ndjson"},
                    ).raise_for_status()
                    batch = []
        if batch:
            c.post(
                "/_bulk", content="\n".join(batch) + "\n", headers={"content-type": "application/x-ndjson"}
            ).raise_for_status()
        c.post(f"/{INDEX}/_refresh").raise_for_status()
        count = c.get(f"/{INDEX}/_count").json()["count"]
    queries = [json.loads(line)["text"] for line in (data / "queries.jsonl").open(encoding="utf-8")]
    print(f"indexed {count} SciFact documents; {len(queries)} queries", flush=True)
    return ids, queries


NGINX_CONF = """
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream os {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    location / {{
      proxy_pass http://os;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""

LUA_GET = """
local ids = {{{ids}}}
request = function()
  return wrk.format("GET", "/{index}/_doc/" .. ids[math.random(#ids)])
end
"""

LUA_SEARCH = """
local bodies = {{{bodies}}}
request = function()
  local headers = {{["Content-Type"] = "application/json"}}
  return wrk.format("POST", "/{index}/_search", headers, bodies[math.random(#bodies)])
end
"""


def otlp_sink() -> str:
    """An OTLP/HTTP receiver that takes every export and keeps nothing (for the traced sidecar)."""
    import http.server
    import threading

    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def lua_str(s: str) -> str:
    return "[==[" + s + "]==]"


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, then wait for each (one that takes over 15 s is killed)."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"cannot read {label} from wrk:\n{out}")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "p50": ms("50%"),
        "p99": ms("99%"),
        "rps": rps,
        "non2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median latency and throughput over runs; errors summed."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("p50", "p99", "rps")}
    out["non2xx"] = sum(r["non2xx"] for r in runs)
    out["socket_errors"] = sum(r["socket_errors"] for r in runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "scifact"),
        help="SciFact in BEIR layout, or beir/scifact (downloaded once)",
    )
    ap.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    ap.add_argument("--reps", type=int, default=3, help="interleaved runs per cell; the median is reported")
    ap.add_argument(
        "--profile",
        type=Path,
        help="record the sidecar with py-spy during the 8-client GET run into this SVG",
    )
    ap.add_argument("--against", metavar="REV", help="also run the sidecar of this git commit, side by side")
    ap.add_argument(
        "--traced",
        type=float,
        metavar="RATIO",
        help="also run a sidecar with tracing on (this sample_ratio of the requests) to a local OTLP sink",
    )
    args = ap.parse_args()
    args.data = dataset(args.data, "bench/proxy_overhead.py", ("corpus.jsonl", "queries.jsonl"))
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install wrk nginx-light")

    from osmem_server import OsmemServer

    from sidecar.embedded import stop_embedded

    work = Path(tempfile.mkdtemp(prefix="rerank-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    cluster = OsmemServer.start(japanese=False)
    try:
        ids, queries = load_scifact(cluster.url, args.data)
        upstream = cluster.url.removeprefix("http://")

        nginx_port = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, upstream=upstream, port=nginx_port))
        procs.append(subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-g", "daemon off;"]))

        side_port, admin_port = free_port(), free_port()
        config = {
            "listen": f"127.0.0.1:{side_port}",
            "upstream": {"url": cluster.url},
            "admin": {"listen": f"127.0.0.1:{admin_port}"},
            "log_level": "warning",
            "models": {},
            "routes": [],
        }
        (work / "sidecar.yaml").write_text(json.dumps(config))
        side = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(work / "sidecar.yaml")]
        )
        procs.append(side)

        targets = {
            "direct": cluster.url,
            "nginx": f"http://127.0.0.1:{nginx_port}",
            "sidecar": f"http://127.0.0.1:{side_port}",
        }
        if args.against:
            tree = work / "against"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.against],
                check=True,
                capture_output=True,
            )
            old_port = free_port()
            old = dict(config, listen=f"127.0.0.1:{old_port}", admin={"listen": f"127.0.0.1:{free_port()}"})
            (work / "against.yaml").write_text(json.dumps(old))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(work / "against.yaml")],
                    cwd=tree,
                    env={**os.environ, "PYTHONPATH": str(tree)},
                )
            )
            targets["before"] = f"http://127.0.0.1:{old_port}"
        if args.traced is not None:
            sink = otlp_sink()
            traced_port = free_port()
            traced = dict(
                config,
                listen=f"127.0.0.1:{traced_port}",
                admin={"listen": f"127.0.0.1:{free_port()}"},
                tracing={"endpoint": sink, "sample_ratio": args.traced},
            )
            (work / "traced.yaml").write_text(json.dumps(traced))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(work / "traced.yaml")]
                )
            )
            targets["traced"] = f"http://127.0.0.1:{traced_port}"
        for url in targets.values():
            wait_http(url + "/")

        rnd = random.Random(7)
        get_ids = rnd.sample(ids, 500)
        (work / "get.lua").write_text(LUA_GET.format(ids=",".join(lua_str(i) for i in get_ids), index=INDEX))
        bodies = [json.dumps({"query": {"match": {"text": q}}, "size": 10}) for q in queries]
        (work / "search.lua").write_text(
            LUA_SEARCH.format(bodies=",".join(lua_str(b) for b in bodies), index=INDEX)
        )

        results: dict[tuple[str, int, str], dict[str, float]] = {}
        for workload, script in (("GET _doc", work / "get.lua"), ("search (bypassed)", work / "search.lua")):
            for conns in (1, 8):
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
                for rep in range(args.reps):  # interleaved, so drift hits every target alike
                    for name, url in targets.items():
                        run_wrk(url, script, conns, 1)  # warm-up
                        spy = None
                        if (
                            args.profile
                            and rep == 0
                            and name == "sidecar"
                            and conns == 8
                            and workload == "GET _doc"
                        ):
                            fmt = "flamegraph" if args.profile.suffix == ".svg" else "raw"
                            spy = subprocess.Popen(
                                ["py-spy", "record", "-f", fmt, "-o", str(args.profile), "-p", str(side.pid),
                                 "-d", str(args.seconds), "-r", "200"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            )  # fmt: skip
                        runs[name].append(run_wrk(url, script, conns, args.seconds))
                        if spy:
                            spy.wait(60)
                for name, rs in runs.items():
                    results[(workload, conns, name)] = _median(rs)

        print()
        print(f"median of {args.reps} interleaved runs of {args.seconds} s each")
        print(
            f"{'workload':<20}{'conns':>6}{'target':>10}{'p50 ms':>10}{'p99 ms':>10}"
            f"{'req/s':>11}{'errors':>8}"
        )
        for (workload, conns, name), r in results.items():
            errors = r["non2xx"] + r["socket_errors"]
            print(
                f"{workload:<20}{conns:>6}{name:>10}{r['p50']:>10.3f}{r['p99']:>10.3f}"
                f"{r['rps']:>11.0f}{errors:>8.0f}"
            )
        print()
        for workload in ("GET _doc", "search (bypassed)"):
            d1, s1, n1 = (results[(workload, 1, t)] for t in ("direct", "sidecar", "nginx"))
            d8, s8, n8 = (results[(workload, 8, t)] for t in ("direct", "sidecar", "nginx"))
            print(f"{workload}:")
            print(
                f"  added p50 at 1 client:  sidecar {s1['p50'] - d1['p50']:+.3f} ms"
                f"   nginx {n1['p50'] - d1['p50']:+.3f} ms"
            )
            print(
                f"  throughput at 8 clients: sidecar/nginx {s8['rps'] / n8['rps']:.1%}"
                f"   sidecar/direct {s8['rps'] / d8['rps']:.1%}   nginx/direct {n8['rps'] / d8['rps']:.1%}"
            )
            if args.against:
                b1, b8 = results[(workload, 1, "before")], results[(workload, 8, "before")]
                print(
                    f"  against {args.against}: added p50 at 1 client {s1['p50'] - d1['p50']:+.3f} ms now,"
                    f" {b1['p50'] - d1['p50']:+.3f} ms before; throughput at 8 clients now/before"
                    f" {s8['rps'] / b8['rps']:.1%}"
                )
            if args.traced is not None:
                t1, t8 = results[(workload, 1, "traced")], results[(workload, 8, "traced")]
                print(
                    f"  tracing on ({args.traced:g} of requests sampled): added p50 at 1 client"
                    f" {t1['p50'] - d1['p50']:+.3f} ms; throughput at 8 clients traced/off"
                    f" {t8['rps'] / s8['rps']:.1%}"
                )
        return 0
    finally:
        stop(procs)
        stop_embedded(cluster)
        if args.against:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "against")])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
