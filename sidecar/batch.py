"""``rerank-sidecar rerank``: rank documents from a file for one query or many, no cluster needed."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidecar.config import ConfigError, ModelConfig, load_config, model_entry
from sidecar.docfiles import DocumentsError, jsonl_values, load_documents
from sidecar.engine.calibration import Calibration, apply
from sidecar.engine.protocol import Scorer, ScoreRequest

DEFAULT_MODEL = "Qwen/Qwen3-Reranker-0.6B"
CHUNK = 256  # documents per request to the batcher: the progress bar moves, memory stays flat


def _backend_for(model: str) -> str:
    name = model.lower()
    if "qwen3-reranker" in name:
        return "qwen3"
    if "minilm" in name and "cross" not in name and "marco" not in name:
        return "bi-encoder"
    return "cross-encoder"


def model_spec(args: argparse.Namespace) -> tuple[str, ModelConfig]:
    """The model to rank with: an entry of ``--config`` (``--model`` picks one), or ``--model``."""
    if args.config:
        config = load_config(args.config)
        if not config.models:
            raise ConfigError(f"{args.config}: no models defined")
        name = args.model or (config.routes[0].model if config.routes else next(iter(config.models)))
        if name not in config.models:
            raise ConfigError(
                f"{args.config}: no model {name!r} (models: {', '.join(sorted(config.models))})"
            )
        return name, config.models[name]
    model = args.model or DEFAULT_MODEL
    backend = args.backend or _backend_for(model)
    return "rerank", model_entry({"backend": backend, "model": model, "device": args.device})


def read_queries(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(id, text) pairs: ``--query``, or ``--queries`` (a line each, or JSONL with _id and text)."""
    if args.query is not None:
        if not args.query.strip():
            raise DocumentsError("--query: empty")
        return [("1", args.query)]
    path = Path(args.queries)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        out = []
        for n, doc in jsonl_values(path.read_text(encoding="utf-8").splitlines(), path):
            if not isinstance(doc, dict) or "text" not in doc:
                raise DocumentsError(f"{path}:{n}: expected an object with text")
            out.append((str(doc.get("_id", n)), str(doc["text"])))
        return out
    return [(str(i), q) for i, q in enumerate(load_documents(path), 1)]


async def rank_all(
    scorer: Scorer,
    queries: list[tuple[str, str]],
    docs: list[str],
    instruction: str | None,
    advance: Callable[[int], None],
    calibration: Calibration | None = None,
) -> list[list[float]]:
    """Scores of every document for every query (calibrated into [0, 1] as the proxy's are),
    streamed through the batcher in chunks."""
    out = []
    for _, query in queries:
        scores: list[float] = []
        for i in range(0, len(docs), CHUNK):
            part = docs[i : i + CHUNK]
            scored = await scorer.score(ScoreRequest.of([query], part, instruction, 3600.0))
            scores += apply(calibration, scored[0].scores)
            advance(len(part))
        out.append(scores)
    return out


def render(
    fmt: str, queries: list[tuple[str, str]], docs: list[str], scores: list[list[float]], top: int | None
) -> str:
    """The rankings as a table, JSON or CSV."""
    rankings = []
    for (qid, query), row in zip(queries, scores, strict=True):
        order = sorted(range(len(docs)), key=lambda i: (-row[i], i))[: top or len(docs)]
        rankings.append((qid, query, [(r, i, row[i]) for r, i in enumerate(order, 1)]))
    if fmt == "json":
        return json.dumps(
            [
                {
                    "query_id": qid,
                    "query": q,
                    "ranking": [{"rank": r, "index": i, "score": s, "document": docs[i]} for r, i, s in rows],
                }
                for qid, q, rows in rankings
            ],
            ensure_ascii=False,
            indent=1,
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["query_id", "rank", "index", "score", "document"])
        for qid, _, rows in rankings:
            for r, i, s in rows:
                w.writerow([qid, r, i, f"{s:.6f}", docs[i]])
        return buf.getvalue().rstrip("\n")
    lines = []
    for qid, query, rows in rankings:
        lines.append(f"query {qid}: {query}")
        lines.append(f"{'rank':>5} {'score':>9} {'input':>6}  document")
        for r, i, s in rows:
            snippet = " ".join(docs[i].split())
            snippet = snippet if len(snippet) <= 90 else snippet[:89] + "…"
            # the document's number as a person counts the file's documents (from 1, as the TUI's
            # sandbox does); JSON and CSV give "index", from 0, for programs
            lines.append(f"{r:>5} {s:>9.4f} {i + 1:>6}  {snippet}")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def cmd_rerank(args: argparse.Namespace) -> int:
    """Rank a documents file; exit 2 with one line for a file that cannot be read."""
    from sidecar.engine.registry import make_scorer, model_calibration  # torch: for this command alone
    from sidecar.engine.remote import RemoteError
    from sidecar.eval.prepare import progress
    from sidecar.logs import setup_logging

    setup_logging("warning")

    try:
        queries = read_queries(args)
        docs = load_documents(args.docs, args.column)
    except (DocumentsError, OSError, UnicodeDecodeError) as e:
        print(f"rerank-sidecar rerank: {e}", file=sys.stderr)
        return 2
    name, spec = model_spec(args)
    scorer = make_scorer(name, spec)

    async def main() -> list[list[float]]:
        try:
            await scorer.start()
            with progress(not args.quiet and len(docs) * len(queries) > CHUNK) as task:
                advance = task(f"{name} ({spec.backend})", len(docs) * len(queries))
                cal = model_calibration(spec)
                return await rank_all(scorer, queries, docs, args.instruction, advance, cal)
        finally:
            await scorer.aclose()

    try:
        scores = asyncio.run(main())
    except RemoteError as e:
        print(f"rerank-sidecar rerank: models.{name}: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # no such model, no network to fetch it, weights that do not load
        reason = " ".join(str(e).split())
        print(
            f"rerank-sidecar rerank: models.{name}: cannot load {spec.model}: {reason[:300]}", file=sys.stderr
        )
        return 2
    print(render(args.format, queries, docs, scores, args.top))
    return 0


def add_parser(sub: Any) -> None:
    """The rerank subcommand's arguments."""
    p = sub.add_parser("rerank", help="rank documents from a file for a query, without a cluster")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", help="the query")
    q.add_argument("--queries", help="a file of queries: one per line, or JSONL with _id and text")
    p.add_argument("--docs", required=True, help="documents: .txt (one per line), .csv, .jsonl")
    p.add_argument("--column", "--field", dest="column", help="the CSV column or JSONL field (default: text)")
    p.add_argument("--instruction", help="the reranker's instruction (qwen3)")
    p.add_argument("--config", help="take the model from this config (its first route's, or --model)")
    p.add_argument(
        "--model", help=f"a model entry of --config, or a hub name or path (default {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--backend", choices=["qwen3", "cross-encoder", "bi-encoder"], help="with --model outside a config"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--top", type=int, help="show only the best N per query")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_rerank)
