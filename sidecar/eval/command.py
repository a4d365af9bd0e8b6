"""``rerank-sidecar eval``: the baseline and every setting on a judged dataset, as one table."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.config import ConfigError
from sidecar.eval.dataset import DEFAULT_STORE, DatasetError

if TYPE_CHECKING:
    from sidecar.engine.protocol import Backend
    from sidecar.eval.runner import Result

# The runner, the cluster and the metrics are imported by the command that runs, not by the
# parser that lists every command (``rerank-sidecar --help`` stays quick).


def evaluate_settings(
    args: argparse.Namespace, backends: Mapping[str, Backend] | None = None
) -> dict[str, Any]:
    """Everything the command does but printing: the report as a dict."""
    from sidecar.eval.index import without_rerank_ext
    from sidecar.eval.prepare import prepared, progress
    from sidecar.eval.runner import run_queries, run_setting

    with progress(not args.quiet) as task, prepared(args, task) as p:
        report: dict[str, Any] = {
            "dataset": str(p.dataset.path),
            "index": p.index,
            "queries": len(p.dataset.queries),
            "cluster": "embedded osmem-server" if p.embedded else p.cluster,
            "indexed": p.indexed,
        }
        n = len(p.dataset.queries)

        async def run_all() -> tuple[Result, dict[str, Result]]:
            direct = without_rerank_ext(p.template)
            base = await run_queries(
                p.cluster, p.index, p.dataset, direct, 100, args.concurrency, task("baseline", n)
            )
            results = {}
            for name, config in p.configs.items():
                advance = task(name, n)
                results[name] = await run_setting(
                    config, p.index, p.dataset, p.template, args.concurrency, advance, backends, p.paths[name]
                )
            return base, results

        base, results = asyncio.run(run_all())
    report["baseline"] = {**base.summary(), "per_query": _per_query(base)}
    report["settings"] = {
        name: {**r.summary(base), "per_query": _per_query(r)} for name, r in results.items()
    }
    return report


def _per_query(result: Result) -> dict[str, Any]:
    return {
        q: {
            **{k: round(v, 4) for k, v in m.items()},
            "ms": round(result.ms.get(q, 0.0), 1),
            "top10": result.runs[q][:10],
        }
        for q, m in result.per_query.items()
    }


def _share(summary: Mapping[str, Any], key: str) -> str:
    return f"{summary[key] * 100:6.1f}%" if key in summary else f"{'–':>7}"


def table(report: Mapping[str, Any]) -> str:
    """The report as one aligned text table."""
    head = (
        f"{'setting':<24} {'NDCG@10':>8} {'MRR@10':>8} {'R@100':>7} {'Hit@1':>7}"
        f" {'better':>7} {'worse':>7} {'same':>7} {'p50 ms':>8} {'p95 ms':>8}"
    )
    lines = [
        f"{report['dataset']}: {report['queries']} queries, index {report['index']} ({report['cluster']})",
        head,
        "-" * len(head),
    ]

    def row(name: str, s: Mapping[str, Any]) -> str:
        return (
            f"{name:<24} {s['ndcg@10']:>8.4f} {s['mrr@10']:>8.4f} {s['recall@100']:>7.4f} {s['hit@1']:>7.4f}"
            f" {_share(s, 'improved')} {_share(s, 'hurt')} {_share(s, 'unchanged')}"
            f" {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f}"
        )

    lines.append(row("baseline (cluster)", report["baseline"]))
    for name, s in report["settings"].items():
        lines.append(row(name, s))
        odd = {k: v for k, v in s["outcomes"].items() if k != "applied"}
        if odd:
            lines.append(f"{'':<24} not reranked: {', '.join(f'{v} {k}' for k, v in odd.items())}")
    return "\n".join(lines)


def plot(report: Mapping[str, Any], color: bool = False) -> str:
    """Per setting, the per-query NDCG@10 differences from the baseline, sorted, as a terminal bar chart."""
    import plotext as plt

    out = []
    base = report["baseline"]["per_query"]
    for name, s in report["settings"].items():
        diffs = sorted(s["per_query"][q]["ndcg@10"] - base[q]["ndcg@10"] for q in base)
        plt.clear_figure()
        plt.bar(list(range(1, len(diffs) + 1)), diffs, width=1)
        plt.title(f"{name}: NDCG@10 minus baseline, per query (sorted)")
        plt.plotsize(100, 20)
        plt.theme("clear")
        out.append(plt.build() if color else plt.uncolorize(plt.build()))
    return "\n".join(out)


def cmd_eval(args: argparse.Namespace) -> int:
    """The eval subcommand: exit 0 with the table, or 2 with one line saying what is wrong."""
    from sidecar.eval.index import IndexingError
    from sidecar.eval.runner import EvalError
    from sidecar.logs import setup_logging

    setup_logging("warning")
    if (args.write or args.apply or args.calibrate) and not args.tune:
        print("rerank-sidecar eval: --write, --apply and --calibrate go with --tune", file=sys.stderr)
        return 2
    try:
        if args.tune:
            from sidecar.eval.tune_command import cmd_tune

            return cmd_tune(args)
        report = evaluate_settings(args)
    except (DatasetError, EvalError, IndexingError) as e:
        print(f"rerank-sidecar eval: {e}", file=sys.stderr)
        return 2
    except ConfigError:
        raise
    print(table(report))
    if args.plot:
        print(plot(report, color=sys.stdout.isatty()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def add_parser(sub: Any) -> None:
    """The eval subcommand's arguments."""
    p = sub.add_parser("eval", help="offline evaluation on a BEIR-layout dataset: baseline and each config")
    p.add_argument(
        "dataset", help="folder with corpus.jsonl, queries.jsonl, qrels.tsv; or beir/NAME (downloaded once)"
    )
    p.add_argument("--split", default="test", help="beir/NAME: which qrels to judge by (default test)")
    p.add_argument(
        "--config", action="append", required=True, help="a setting (repeat); named by the file's stem"
    )
    p.add_argument("--index", help="index name (default: the dataset folder's name)")
    p.add_argument(
        "--embedded", action="store_true", help="start an osmem-server and use it for every config"
    )
    p.add_argument("--json", help="write the figures and per-query results to this file")
    p.add_argument(
        "--plot", action="store_true", help="print per-query NDCG@10 differences as a terminal plot"
    )
    p.add_argument("--concurrency", type=int, default=4, help="searches in flight at once (default 4)")
    p.add_argument("--query", help='JSON file: the search body, with "{query}" where the query text goes')
    p.add_argument("--mapping", help="JSON file: the index mappings to create it with")
    p.add_argument("--cache", default=str(DEFAULT_STORE), help="bi-encoder document embeddings kept here")
    p.add_argument("--no-cache", action="store_true", help="do not keep document embeddings on disk")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--tune",
        action="store_true",
        help="search fusion, window, thresholds and rewrite settings of the one --config's route,"
        " cross-validated over queries",
    )
    p.add_argument("--folds", type=int, default=5, help="--tune: cross-validation folds (default 5)")
    p.add_argument(
        "--write", metavar="CONFIG", help="--tune: put the best setting into this YAML file's route"
    )
    p.add_argument("--apply", metavar="ADMIN_URL", help="--tune: PUT the best setting to a running sidecar")
    p.add_argument("--token-env", help="--apply: env var holding the admin token")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="--tune: also write the model calibration fitted on the dataset",
    )
    p.set_defaults(func=cmd_eval)
