"""What hostile clients cost the others: a steady search load's latency with and without abuse.

Starts osmem-server with the demo corpus and one sidecar (``rerank-sidecar serve`` in its own
process, the packaged MiniLM), then runs a steady load of reranked searches and pass-through GETs
from a few clients for ``--seconds``, twice in the same run: alone, and beside abusers on
loopback (slow-header clients, idle connections past the connection limit, large ``_msearch``
requests, gzip decompression bombs). Prints the steady load's p50/p99 and errors per phase and
the ratios, and what the abusers were answered.

    python bench/abuse.py [--seconds 10] [--clients 4]

Every request goes to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from osmem_server import OsmemServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.demo.run import load_corpus  # noqa: E402
from sidecar.embedded import stop_embedded  # noqa: E402
from testkit.fleet import Fleet  # noqa: E402

INDEX = "kb"
ROUTE = {"name": "kb", "indices": [INDEX], "model": "minilm", "window": 50, "fields": ["title", "text"]}
QUERIES = [
    "pod oom",
    "gpu memory",
    "lora rank",
    "free shipping",
    "error code 13",
    "restart a pod",
    "java int",
]
LIMITS = {"header_timeout_s": 2.0, "body_timeout_s": 2.0, "max_connections": 600}


def steady(url: str, seconds: float, clients: int) -> tuple[list[float], Counter[str]]:
    """Searches and GETs from ``clients`` threads for ``seconds``: their latencies and statuses."""
    took: list[float] = []
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            i = n
            while time.monotonic() < end:
                i += 1
                started = time.perf_counter()
                try:
                    if i % 2:
                        r = c.post(f"/{INDEX}/_search", json={"query": {"match": {"text": QUERIES[i % 7]}}})
                    else:
                        r = c.get(f"/{INDEX}/_doc/errors-000")
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                with lock:
                    took.append((time.perf_counter() - started) * 1000)
                    outcomes[key] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return took, outcomes


class Abusers:
    """Hostile clients on loopback until ``stop``: what each was answered is counted."""

    def __init__(self, url: str, seconds: float) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.addr = (host, int(port))
        self.url = url
        self.end = time.monotonic() + seconds
        self.answers: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.slow_headers),
            threading.Thread(target=self.idle_connections),
            threading.Thread(target=self.big_msearch),
            threading.Thread(target=self.bombs),
        ]

    def note(self, what: str, answer: bytes) -> None:
        status = answer[9:12].decode(errors="replace") if answer.startswith(b"HTTP/1.1") else "closed"
        with self.lock:
            self.answers[f"{what} {status}"] += 1

    def _recv(self, s: socket.socket) -> bytes:
        try:
            return s.recv(4096)
        except OSError:
            return b""

    def slow_headers(self) -> None:
        while time.monotonic() < self.end:
            socks = []
            for _ in range(100):
                try:
                    s = socket.create_connection(self.addr, timeout=5)
                    s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
                    socks.append(s)
                except OSError:
                    self.note("slow-header", b"")
            for s in socks:
                self.note("slow-header", self._recv(s))
                s.close()

    def idle_connections(self) -> None:
        socks = []
        try:
            for _ in range(700):  # past max_connections
                try:
                    socks.append(socket.create_connection(self.addr, timeout=5))
                except OSError:
                    self.note("idle", b"")
            for s in socks:
                s.settimeout(0.01)
                try:
                    data = s.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                self.note("idle", data)
            while time.monotonic() < self.end:
                time.sleep(0.1)
        finally:
            for s in socks:
                s.close()

    def big_msearch(self) -> None:
        line = json.dumps({"query": {"match": {"text": "pod memory"}}, "size": 10})
        body = ("".join(f'{{"index": "{INDEX}"}}\n{line}\n' for _ in range(1000))).encode()
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while time.monotonic() < self.end:
                try:
                    r = c.post("/_msearch", content=body, headers={"content-type": "application/x-ndjson"})
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                with self.lock:
                    self.answers[f"msearch-1000 {key}"] += 1

    def bombs(self) -> None:
        bomb = gzip.compress(b'{"query": {"match": {"text": "' + b"a " * 25_000_000 + b'"}}}')
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while time.monotonic() < self.end:
                try:
                    key = str(c.post(f"/{INDEX}/_search", content=bomb, headers=headers).status_code)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                with self.lock:
                    self.answers[f"gzip-bomb {len(bomb) // 1024} KB -> 50 MB {key}"] += 1
                time.sleep(0.2)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(120)


def _row(name: str, took: list[float], outcomes: Counter[str]) -> dict[str, Any]:
    q = statistics.quantiles(took, n=100) if len(took) > 1 else [took[0]] * 99
    ok = sum(n for k, n in outcomes.items() if k.startswith("2"))
    return {"phase": name, "requests": len(took), "ok": ok, "p50": q[49], "p99": q[98], "other": outcomes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    ap.add_argument("--clients", type=int, default=4, help="steady clients")
    args = ap.parse_args()
    cluster = OsmemServer.start(japanese=False)
    try:
        load_corpus(cluster.url, INDEX)
        config = {
            "upstream": {"url": cluster.url},
            "models": {"minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}},
            "routes": [ROUTE],
            "limits": LIMITS,
            "log_level": "error",
        }
        with tempfile.TemporaryDirectory() as tmp, Fleet(config, 1, Path(tmp), threads=None) as fleet:
            url = fleet.urls[0]
            steady(url, 2, args.clients)  # warm: every document embedded once
            rows = [_row("alone", *steady(url, args.seconds, args.clients))]
            abusers = Abusers(url, args.seconds)
            abusers.start()
            rows.append(_row("beside abusers", *steady(url, args.seconds, args.clients)))
            abusers.join()
            alive = fleet.procs[0].poll() is None
    finally:
        stop_embedded(cluster)
    print(
        f"steady load: {args.clients} clients, reranked searches and GETs alternating,"
        f" {args.seconds:g} s a phase"
    )
    print(f"{'phase':<16} {'requests':>9} {'2xx':>7} {'p50 ms':>8} {'p99 ms':>8}  other answers")
    for r in rows:
        other = {k: v for k, v in r["other"].items() if not k.startswith("2")}
        print(
            f"{r['phase']:<16} {r['requests']:>9} {r['ok']:>7} {r['p50']:>8.1f} {r['p99']:>8.1f}"
            f"  {other or ''}"
        )
    alone, abused = rows
    print(
        f"ratio beside abusers / alone: p50 {abused['p50'] / alone['p50']:.2f}x,"
        f" p99 {abused['p99'] / alone['p99']:.2f}x,"
        f" throughput {abused['requests'] / max(1, alone['requests']):.2f}x"
    )
    print("the abusers were answered:")
    for key, n in sorted(abusers.answers.items()):
        print(f"  {key}: {n}")
    print(f"the sidecar process {'is still serving' if alive else 'DIED'}")


if __name__ == "__main__":
    main()
