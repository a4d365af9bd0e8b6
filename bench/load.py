"""Mixed load and an upstream outage through the sidecar, on loopback, for a bounded time.

Searches (reranked and bypassed), `_bulk` writes and document gets run concurrently through a
sidecar (started as its own process, so its RSS is its own) in front of osmem-server. First the
same load without faults goes straight to the cluster and through the sidecar, side by side
(throughput ratio, p50, p99 per kind of request). Then a TCP relay between the sidecar and the
cluster is stopped for a while in the middle of a run: the sidecar sees the cluster go away
(connections cut and refused) and come back. It prints errors outside the outage, what clients
saw during it, how long the sidecar took to recover, its RSS before and after, and whether every
acknowledged write is in the index exactly once.

    python bench/load.py --seconds 30 --clients 16 --outage 10:14

The tests (tests/proxy/test_load.py) run the same harness, shorter, against an in-process sidecar.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from sidecar.percentile import percentile

QUERIES = [
    "GPU memory",
    "lora rank",
    "pod restart",
    "shipping to norway",
    "java types",
    "out of memory errors",
    "refund within 30 days",
    "matrix rank",
]


class Relay:
    """A TCP relay on loopback that can be stopped (listener closed, live connections cut) and
    started again on the same port: an upstream outage without losing the cluster's data."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._live):
            w.transport.abort()
        self._live.clear()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._live |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._live -= {writer, up_writer}


@dataclass
class Result:
    kind: str
    started: float  # seconds since the run began
    ms: float
    status: int  # 0: no HTTP answer
    error_type: str | None = None


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)  # write sequence numbers the cluster acknowledged
    sent: set[int] = field(default_factory=set)

    def kinds(self) -> list[str]:
        return sorted({r.kind for r in self.results})


async def run_load(
    proxy: str,
    seconds: float,
    clients: int,
    *,
    outage: tuple[float, float] | None = None,
    relay: Relay | None = None,
    write_index: str = "loadwrites",
) -> Report:
    """Drive mixed traffic through ``proxy`` for ``seconds``; stop ``relay`` during ``outage``."""
    report = Report()
    seq = itertools.count()
    begin = time.monotonic()
    deadline = begin + seconds
    rng = random.Random(7)

    async def timed(kind: str, call: Awaitable[httpx.Response]) -> httpx.Response | None:
        t0 = time.monotonic()
        try:
            r = await call
        except httpx.HTTPError as e:
            report.results.append(
                Result(kind, t0 - begin, (time.monotonic() - t0) * 1000, 0, type(e).__name__)
            )
            return None
        etype = None
        if r.status_code >= 400:
            try:
                etype = r.json()["error"]["type"]
            except (ValueError, KeyError, TypeError):
                etype = "unparsed"
        report.results.append(Result(kind, t0 - begin, (time.monotonic() - t0) * 1000, r.status_code, etype))
        return r

    async def worker(n: int, c: httpx.AsyncClient) -> None:
        kinds = ["rerank", "bypass", "write", "get"]
        while time.monotonic() < deadline:
            kind = kinds[n % 4] if n < 4 else rng.choice(kinds)
            q = rng.choice(QUERIES)
            if kind == "rerank":
                await timed(kind, c.post("/kb/_search", json={"query": {"match": {"text": q}}, "size": 5}))
            elif kind == "bypass":
                await timed(kind, c.post("/plain/_search", json={"query": {"match": {"text": q}}}))
            elif kind == "get":
                await timed(kind, c.get(f"/kb/_doc/{rng.randrange(16)}"))
            else:
                batch = [next(seq) for _ in range(5)]
                report.sent.update(batch)
                lines = []
                for s in batch:
                    lines.append(json.dumps({"index": {"_index": write_index}}))
                    lines.append(json.dumps({"seq": s, "text": f"load write {s}"}))
                body = ("\n".join(lines) + "\n").encode()
                r = await timed(
                    kind,
                    c.post("/_bulk", content=body, headers={"content-type": "application/x-ndjson"}),
                )
                if r is not None and r.status_code == 200:
                    items = r.json().get("items", [])
                    for s, item in zip(batch, items, strict=False):
                        if next(iter(item.values())).get("status") in (200, 201):
                            report.acked.add(s)

    async def faults() -> None:
        if outage is None or relay is None:
            return
        await asyncio.sleep(max(0.0, begin + outage[0] - time.monotonic()))
        await relay.stop()
        await asyncio.sleep(max(0.0, begin + outage[1] - time.monotonic()))
        await relay.start()

    async def client(n: int) -> None:  # each client one keep-alive connection, as an app instance has
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=proxy, timeout=30, limits=limits) as c:
            await worker(n, c)

    await asyncio.gather(faults(), *(client(n) for n in range(clients)))
    return report


def check_writes(cluster: str, report: Report, index: str = "loadwrites") -> dict[str, int]:
    """Every acknowledged write present exactly once; how many were sent, acknowledged, stored."""
    seqs: list[int] = []
    with httpx.Client(base_url=cluster, timeout=60) as c:
        c.post(f"/{index}/_refresh")
        after: list[Any] | None = None
        while True:  # every document, in pages sorted by seq
            body: dict[str, Any] = {
                "size": 5000,
                "_source": ["seq"],
                "sort": [{"seq": "asc"}, {"_id": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            r = c.post(f"/{index}/_search", json=body)
            r.raise_for_status()
            hits = r.json()["hits"]["hits"]
            if not hits:
                break
            seqs += [h["_source"]["seq"] for h in hits]
            after = hits[-1]["sort"]
    counts: dict[int, int] = {}
    for s in seqs:
        counts[s] = counts.get(s, 0) + 1
    return {
        "sent": len(report.sent),
        "acknowledged": len(report.acked),
        "stored": len(seqs),
        "acknowledged_missing": len(report.acked - set(counts)),
        "duplicated": sum(1 for n in counts.values() if n > 1),
    }


def summarize(report: Report, outage: tuple[float, float] | None, grace_s: float = 1.0) -> dict[str, Any]:
    """Throughput and latency per kind; errors outside the outage (plus ``grace_s``); what
    clients saw during it; recovery time after it."""
    out: dict[str, Any] = {"kinds": {}}
    span = max((r.started for r in report.results), default=0.0) or 1.0

    def during(r: Result) -> bool:  # its time in flight overlaps the outage (plus the grace)
        return (
            outage is not None and r.started <= outage[1] + grace_s and r.started + r.ms / 1000 >= outage[0]
        )

    for kind in report.kinds():
        rs = [r for r in report.results if r.kind == kind and not during(r)]
        ms = sorted(r.ms for r in rs) or [0.0]
        out["kinds"][kind] = {
            "requests": len(rs),
            "per_s": round(len(rs) / span, 1),
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(percentile(ms, 99), 2),
        }
    out["errors_outside_outage"] = [
        (r.kind, round(r.started, 2), r.status, r.error_type)
        for r in report.results
        if not during(r) and not (200 <= r.status < 300)
    ]
    if outage is not None:
        seen: dict[str, int] = {}
        for r in report.results:
            if during(r) and not (200 <= r.status < 300):
                key = f"{r.status} {r.error_type}"
                seen[key] = seen.get(key, 0) + 1
        out["during_outage"] = seen
        after = [r for r in report.results if r.started >= outage[1] and 200 <= r.status < 300]
        out["recovered_after_s"] = round(min(r.started for r in after) - outage[1], 2) if after else None
    return out


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from osmem_server import OsmemServer

    from sidecar.embedded import stop_embedded
    from tests.conftest import CORPUS, index_corpus

    cluster = OsmemServer.start(japanese=False)
    for index in ("kb", "plain"):
        index_corpus(cluster.url, index, CORPUS)
    host, port = cluster.url.removeprefix("http://").split(":")
    relay = Relay(host, int(port))
    await relay.start()
    tmp = Path(tempfile.mkdtemp())
    proxy_port, admin_port = 39400 + os.getpid() % 500, 39950 + os.getpid() % 40
    cfg = {
        "listen": f"127.0.0.1:{proxy_port}",
        "upstream": {"url": relay.url, "timeout_s": 5, "connect_timeout_s": 1},
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "events": {"sqlite": str(tmp / "events.db")},
        "models": {"minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}},
        "routes": [{"indices": ["kb"], "model": "minilm", "window": 16, "fields": ["title", "text"]}],
    }
    (tmp / "load.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(tmp / "load.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = f"http://127.0.0.1:{proxy_port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{admin_port}/_sidecar/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        await run_load(proxy, 2.0, args.clients, write_index="loadwarmup")  # model, caches, connections
        rss_before = _rss_kb(proc.pid)
        # side by side, no faults: the same load straight to the cluster, then through the sidecar
        direct = summarize(
            await run_load(relay.url, args.seconds, args.clients, write_index="loaddirect"), None
        )
        steady = summarize(await run_load(proxy, args.seconds, args.clients, write_index="loadsteady"), None)
        outage = tuple(float(x) for x in args.outage.split(":")) if args.outage else None
        report = await run_load(proxy, args.seconds, args.clients, outage=outage, relay=relay)  # type: ignore[arg-type]
        rss_after = _rss_kb(proc.pid)
        summary = summarize(report, outage)  # type: ignore[arg-type]
        writes = check_writes(cluster.url, report)
    finally:
        proc.terminate()
        proc.wait(30)
        await relay.stop()
        stop_embedded(cluster)
    print(
        f"{args.seconds:.0f} s per run, {args.clients} clients; no faults: the cluster alone vs the sidecar"
    )
    print(f"{'kind':8} {'direct/s':>9} {'sidecar/s':>9} {'ratio':>6} {'p50 ms':>15} {'p99 ms':>17}")
    for kind, k in steady["kinds"].items():
        d = direct["kinds"][kind]
        ratio = k["per_s"] / d["per_s"] if d["per_s"] else 0.0
        p50, p99 = f"{d['p50_ms']} / {k['p50_ms']}", f"{d['p99_ms']} / {k['p99_ms']}"
        print(f"{kind:8} {d['per_s']:>9} {k['per_s']:>9} {ratio:>6.2f} {p50:>15} {p99:>17}")
    print("(rerank: direct is the cluster's BM25 alone; through the sidecar the model reranks it)")
    n_direct, n_steady = len(direct["errors_outside_outage"]), len(steady["errors_outside_outage"])
    print(f"errors: {n_direct} direct, {n_steady} via sidecar")
    where = args.outage or "none"
    print(f"\nthrough the sidecar, outage {where} (upstream relay stopped)")
    print(f"{'kind':8} {'requests':>9} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, k in summary["kinds"].items():
        print(f"{kind:8} {k['requests']:>9} {k['per_s']:>8} {k['p50_ms']:>8} {k['p99_ms']:>8}")
    errors = summary["errors_outside_outage"] + steady["errors_outside_outage"]
    print(f"errors outside the outage: {len(errors)} {errors[:5]}")
    if outage:
        print(f"during the outage clients saw: {summary['during_outage']}")
        print(f"first success {summary['recovered_after_s']} s after the cluster came back")
    print(f"writes: {writes}")
    before, after = rss_before / 1024, rss_after / 1024
    print(f"sidecar RSS: {before:.0f} MB before, {after:.0f} MB after both ({after - before:+.0f} MB)")
    ok = not errors and not writes["acknowledged_missing"] and not writes["duplicated"]
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--outage", default="10:14", help="START:END seconds into the run; '' for none")
    return asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
