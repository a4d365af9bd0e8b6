"""``rerank-sidecar demo``: a working sidecar in front of an in-memory cluster, offline."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from sidecar.config import Config, ConfigError, load_config, parse_config
from sidecar.embedded import stop_embedded

CORPUS = Path(__file__).with_name("corpus.jsonl")
MAPPINGS = {
    "properties": {
        "title": {"type": "text", "analyzer": "english"},
        "text": {"type": "text", "analyzer": "english"},
        "topic": {"type": "keyword"},
    }
}
EXAMPLE_QUERY = "which lora rank should I use"
VAGUE_QUERY = "k8s pod OOM"
# Chinese that configs/rules/tech.yaml does not turn into English: all-MiniLM-L6-v2 reads English
CHINESE_QUERY = "怎么查看显卡温度"


def demo_config_path(given: str | None) -> Path:
    """The demo config: the flag, ./configs/demo.yaml, or the one beside this checkout's package."""
    if given:
        return Path(given)
    for candidate in (
        Path.cwd() / "configs" / "demo.yaml",
        Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
    ):
        if candidate.is_file():
            return candidate
    raise ConfigError("configs/demo.yaml not found; pass --config FILE")


def corpus() -> Iterator[dict[str, Any]]:
    """The shipped demo documents."""
    with CORPUS.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def load_corpus(url: str, index: str) -> int:
    """Create the demo index in the cluster and bulk the corpus into it."""
    docs = list(corpus())
    with httpx.Client(base_url=url, timeout=60) as c:
        c.delete(f"/{index}")
        c.put(f"/{index}", json={"mappings": MAPPINGS}).raise_for_status()
        lines = []
        for doc in docs:
            lines.append(json.dumps({"index": {"_index": index, "_id": doc["_id"]}}))
            lines.append(json.dumps({k: v for k, v in doc.items() if k != "_id"}, ensure_ascii=False))
        r = c.post(
            "/_bulk?refresh=true",
            content="\n".join(lines) + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        r.raise_for_status()
        if r.json().get("errors"):
            raise RuntimeError("the demo corpus did not index cleanly")
    return len(docs)


def demo_config(base: Config, upstream: str, args: argparse.Namespace) -> Config:
    """The demo config pointed at the embedded cluster, with the command line's addresses."""
    data = base.model_dump()
    data["upstream"]["url"] = upstream
    if args.listen:
        data["listen"] = args.listen
    if args.admin_listen:
        data["admin"]["listen"] = args.admin_listen
    return parse_config(data)


def banner(cluster: str, count: int, index: str, proxy: str, admin: str) -> str:
    """What the demo prints once it is ready."""
    body = json.dumps({"query": {"match": {"text": EXAMPLE_QUERY}}, "size": 3, "_source": ["title"]})
    url = shlex.quote(f"{proxy}/{index}/_search?pretty")
    curl = f"curl -s -i {url} -H 'content-type: application/json' -d {shlex.quote(body)}"
    vague = json.dumps(
        {
            "query": {"multi_match": {"query": VAGUE_QUERY, "fields": ["title", "text"]}},
            "size": 3,
            "_source": ["title"],
        }
    )
    explain = (
        f"curl -s {url} -H 'content-type: application/json' -H 'X-Rerank-Explain: 1' -d {shlex.quote(vague)}"
    )
    chinese = json.dumps({"query": {"match": {"text": CHINESE_QUERY}}, "size": 3}, ensure_ascii=False)
    foreign = f"curl -s -i {url} -H 'content-type: application/json' -d {shlex.quote(chinese)}"
    return "\n".join(
        [
            "rerank-sidecar demo (all-MiniLM-L6-v2 on the CPU, offline)",
            f"  cluster (osmem-server): {cluster}  ({count} documents in index {index!r})",
            f"  proxy:                  {proxy}",
            f"  admin:                  {admin}/_sidecar/health",
            "",
            "Search through the sidecar:",
            f"  {curl}",
            "The cluster's own order for the same query: add -H 'X-Rerank: off'. The sidecar retrieves",
            "with the query and its rewritten variants, so _rerank.original_rank and hits.total are",
            "those of that expanded query, not of the one the cluster answers with X-Rerank: off.",
            "",
            "A vague query, rewritten by configs/rules/tech.yaml (the variants come back under _rerank):",
            f"  {explain}",
            "",
            "A Chinese query the rules do not turn into English is answered in the cluster's order",
            "(X-Rerank-Reason: language; the English model is not asked to guess, models_by_language",
            "names one that reads it):",
            f"  {foreign}",
            "",
            "Watch it in another terminal:",
            f"  rerank-sidecar tui --admin {admin}",
            "Ctrl-C stops the demo.",
        ]
    )


async def run_demo(args: argparse.Namespace) -> None:
    """Start everything, print where it is, serve until interrupted."""
    from osmem_server import OsmemServer

    from sidecar.server import SidecarServer, settle_heap

    path = demo_config_path(args.config)
    base = load_config(path)
    cluster = await asyncio.to_thread(OsmemServer.start, japanese=False)
    try:
        count = await asyncio.to_thread(load_corpus, cluster.url, args.index)
        server = SidecarServer(
            demo_config(base, cluster.url, args),
            config_path=path,
            reload=lambda: demo_config(load_config(path), cluster.url, args),
            persist=False,  # the admin API's config changes stay in memory: the demo file is the checkout's
        )
        task = asyncio.ensure_future(server.serve(install_signals=True))
        ready = asyncio.ensure_future(server.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            return
        settle_heap()
        print(banner(cluster.url, count, args.index, server.proxy_url, server.admin_url), flush=True)
        await task
    finally:
        stop_embedded(cluster)
