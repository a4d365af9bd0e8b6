"""``rerank-sidecar bench``: sizing measured on this machine for a configured route.

Loads the route's model as the sidecar does (its batcher; no score cache, so every pair is
computed, while a bi-encoder keeps its document embeddings as a store would),
runs synthetic searches of the route's window (or documents from ``--docs``), and prints the
latency of one search alone, pairs/s and latency at each concurrency, the highest rate of
searches that stays inside the route's ``timeout_ms`` at p99, padding waste, the GPU's peak
memory and, on a GPU whose bf16 peak is known, the model FLOPs utilisation (MFU).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from typing import Any

from sidecar.config import ConfigError, RouteConfig, load_config
from sidecar.docfiles import DocumentsError, load_documents
from sidecar.engine.protocol import ScoreRequest
from sidecar.engine.score_cache import CachedScorer
from sidecar.percentile import percentile

# dense bf16 peak TFLOP/s by device name (NVIDIA's data sheets, without sparsity)
BF16_PEAK = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
WORDS = (
    "memory gpu cluster index query rank model adapter pod restart shipping refund policy latency "
    "throughput batch token search document field window score cache server network storage"
).split()


def synthetic_documents(n: int, tokens: int, seed: int = 7) -> list[str]:
    """``n`` texts of about ``tokens`` tokens each (a word is about 1.3 tokens)."""
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(WORDS) for _ in range(max(1, int(tokens / 1.3)))) for _ in range(n)]


def _route(config: Any, name: str | None) -> RouteConfig:
    routes: list[RouteConfig] = config.routes
    if not routes:
        raise ConfigError("routes: none configured: bench measures a route's model")
    if name is None:
        return routes[0]
    found = next((r for r in routes if r.name == name), None)
    if found is None:
        raise ConfigError(f"--route: no route {name!r} (routes: {', '.join(r.name for r in routes)})")
    return found


async def _measure(args: argparse.Namespace) -> list[str]:
    from sidecar.engine.registry import make_scorer

    config = load_config(args.config)
    route = _route(config, args.route)
    spec = config.models[route.model]
    docs = (
        load_documents(args.docs)[: route.window]
        if args.docs
        else synthetic_documents(route.window, args.tokens)
    )
    budget = route.timeout_ms / 1000
    scorer = make_scorer(route.model, spec)
    if isinstance(scorer, CachedScorer):  # every pair computed (a bi-encoder keeps its document embeddings)
        scorer = scorer.inner
    head = f"route {route.name}: model {route.model} ({spec.backend}), window {len(docs)}"
    lines = [f"{head}, timeout {route.timeout_ms} ms"]
    counter = itertools.count()

    async def search() -> float:
        query = f"search {next(counter)} about {random.choice(WORDS)} {random.choice(WORDS)}"
        started = time.perf_counter()
        await scorer.score(ScoreRequest.of([query], docs, route.instruction, max(budget, 60.0)))
        return time.perf_counter() - started

    try:
        await scorer.start()
        await search()  # warm-up
        alone = [await search() for _ in range(args.searches)]
        p50, p99 = percentile(alone, 50) * 1000, percentile(alone, 99) * 1000
        lines.append(f"one search alone: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(alone)} searches)")
        lines.append(
            f"{'concurrent':>10} {'searches/s':>11} {'pairs/s':>9} {'p50 ms':>8} {'p99 ms':>8}  in budget"
        )
        best = 0.0
        # tokens per pair as the model counts them (for MFU): the query's few plus the document's
        backend = scorer.backend
        tokens_per_pair = (
            sum(backend.count_tokens(d) for d in docs) / len(docs) + 16
            if backend is not None
            else sum(len(d) for d in docs) / len(docs) / 4
        )
        for c in args.concurrency:
            per = max(2, args.searches // c)
            started = time.perf_counter()

            async def client(n: int = per) -> list[float]:
                return [await search() for _ in range(n)]

            runs = await asyncio.gather(*(client() for _ in range(c)))
            wall = time.perf_counter() - started
            flat = [x for r in runs for x in r]
            rate = len(flat) / wall
            p99 = percentile(flat, 99)
            fits = p99 <= budget
            best = max(best, rate) if fits else best
            lines.append(
                f"{c:>10} {rate:>11.1f} {rate * len(docs):>9.0f} {percentile(flat, 50) * 1000:>8.1f}"
                f" {p99 * 1000:>8.1f}  {'yes' if fits else 'no'}"
            )
        lines.append(f"highest rate inside timeout_ms at p99: {best:.1f} searches/s")
        st = scorer.stats
        if st.padded_tokens:
            lines.append(f"padding waste: {st.padding_waste:.1%}")
        lines += _gpu_lines(scorer, best * len(docs) * tokens_per_pair)
    finally:
        await scorer.aclose()
    return lines


def _gpu_lines(scorer: Any, tokens_per_s: float) -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return ["no CUDA device: GPU memory and MFU not measured"]
    out = [f"GPU memory peak: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"]
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    model = getattr(getattr(scorer, "backend", None), "model", None)
    if peak is None or model is None:
        return [*out, f"MFU: the bf16 peak of {name} is not known here"]
    params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    mfu = 2 * params * tokens_per_s / (peak * 1e12)
    return [*out, f"MFU at the highest rate: {mfu:.1%} of {name}'s {peak:.0f} TFLOP/s bf16"]


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the configured route's model on this machine and print the figures."""
    from sidecar.logs import setup_logging

    setup_logging("warning")
    try:
        lines = asyncio.run(_measure(args))
    except DocumentsError as e:
        raise ConfigError(f"--docs: {e}") from None
    print("\n".join(lines))
    return 0


def add_parser(sub: Any) -> None:
    """The bench subcommand's arguments."""
    p = sub.add_parser("bench", help="measure a route's model on this machine: latency, throughput, sizing")
    p.add_argument("--config", required=True, help="the sidecar's config")
    p.add_argument("--route", help="the route by name (default: the first)")
    p.add_argument("--docs", help="documents to rank (.txt, .csv, .jsonl); default: synthetic texts")
    p.add_argument("--tokens", type=int, default=256, help="tokens per synthetic document (default 256)")
    p.add_argument("--searches", type=int, default=20, help="searches per measurement (default 20)")
    p.add_argument(
        "--concurrency",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 2, 4, 8],
        help="concurrent searches to try, comma-separated (default 1,2,4,8)",
    )
    p.set_defaults(func=cmd_bench)
