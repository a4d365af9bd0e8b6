"""Why the proxy's hot path is hand-written ASGI and the admin API is on Starlette.

The same pass-through (one pooled upstream client, the body read whole) served two ways in one
process, driven in turn with wrk: the sidecar's own ProxyApp, and a Starlette app whose one
route does the same with Request and Response. ``GET /{index}/_doc/{id}`` on osmem-server at 1
and 8 connections; medians of interleaved runs, and the ratio Starlette / hand-written.

    python bench/proxy_framework.py [--seconds 4] [--reps 3]

Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import uvicorn
from osmem_server import OsmemServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy_overhead import LUA_GET, lua_str, run_wrk  # noqa: E402

from sidecar.config import parse_config  # noqa: E402
from sidecar.embedded import stop_embedded  # noqa: E402
from sidecar.proxy.app import ProxyApp  # noqa: E402
from sidecar.proxy.forward import HOP_BY_HOP  # noqa: E402
from sidecar.runtime import Runtime, open_runtime  # noqa: E402

METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD"]


def starlette_proxy(rt: Runtime) -> Starlette:
    """The pass-through written the framework's way."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = [(k, v) for k, v in request.headers.raw if k not in HOP_BY_HOP]
        resp = await rt.services.upstream.request(request.method, target.encode(), headers, body or None)
        try:
            content = await resp.read()
        finally:
            resp.release()
        out = {
            k.decode(): v.decode()
            for k, v in resp.headers
            if k.lower() not in HOP_BY_HOP | {b"content-length"}
        }
        return Response(content, resp.status, headers=out)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=METHODS)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(seconds: int, reps: int) -> None:
    cluster = OsmemServer.start(japanese=False)
    work = Path(tempfile.mkdtemp(prefix="rerank-framework-"))
    try:
        with httpx.Client(base_url=cluster.url) as c:
            for i in range(500):
                c.put(f"/bench/_doc/d{i}", json={"title": f"doc {i}", "text": "x " * (i % 50)})
            c.post("/bench/_refresh")
        (work / "get.lua").write_text(
            LUA_GET.format(ids=",".join(lua_str(f"d{i}") for i in range(500)), index="bench")
        )
        config = parse_config({"upstream": {"url": cluster.url}, "models": {}, "routes": []})
        async with open_runtime(config) as rt:
            apps = {"hand-written": ProxyApp(rt), "starlette": starlette_proxy(rt)}
            urls, servers = {}, []
            for name, app in apps.items():
                port = free_port()
                server = uvicorn.Server(
                    uvicorn.Config(app, port=port, lifespan="off", log_config=None, access_log=False)
                )
                servers.append(asyncio.ensure_future(server.serve()))
                urls[name] = f"http://127.0.0.1:{port}"
            await asyncio.sleep(1.0)
            for conns in (1, 8):
                runs: dict[str, list[dict[str, float]]] = {n: [] for n in apps}
                for _ in range(reps):
                    for name, url in urls.items():
                        await asyncio.to_thread(run_wrk, url, work / "get.lua", conns, 1)  # warm-up
                        runs[name].append(
                            await asyncio.to_thread(run_wrk, url, work / "get.lua", conns, seconds)
                        )
                med = {
                    n: {k: statistics.median(r[k] for r in rs) for k in ("p50", "rps")}
                    for n, rs in runs.items()
                }
                for name, m in med.items():
                    print(
                        f"GET _doc  {conns} conns  {name:<13} p50 {m['p50']:.3f} ms  {m['rps']:>8.0f} req/s"
                    )
                h, s = med["hand-written"], med["starlette"]
                ratio, slower = s["rps"] / h["rps"], s["p50"] / h["p50"]
                print(f"  starlette / hand-written: throughput {ratio:.1%}, p50 {slower:.2f}x")
            for task in servers:
                task.cancel()
    finally:
        stop_embedded(cluster)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.seconds, args.reps))
