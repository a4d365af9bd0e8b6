"""``rerank-sidecar eval``: the baseline and every setting on a judged dataset, as one table."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sidecar.config import Config, ConfigError, load_config
from sidecar.engine.protocol import Backend
from sidecar.eval.beir import dataset_folder
from sidecar.eval.dataset import Dataset, DatasetError, load_dataset
from sidecar.eval.index import DEFAULT_QUERY, IndexingError, ensure_index, without_rerank_ext
from sidecar.eval.runner import EvalError, Result, run_queries, run_setting, setting_config
from sidecar.rewrite.load import compile_rewriters
from sidecar.search.routes import match_route

DEFAULT_STORE = Path("~/.cache/rerank-sidecar/embeddings.sqlite")


@contextmanager
def progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Progress bars on stderr: ``task(description, total)`` gives an ``advance(n)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bars = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
    with bars:

        def task(description: str, total: int) -> Callable[[int], None]:
            tid = bars.add_task(description, total=total)
            return lambda n: bars.advance(tid, n)

        yield task


def _json_file(path: str | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise EvalError(f"{what} {path}: {e.strerror}") from None
    except ValueError as e:
        raise EvalError(f"{what} {path}: not JSON: {e}") from None


@dataclass
class Prepared:
    """A dataset in the cluster and the settings to run on it."""

    dataset: Dataset
    index: str
    configs: dict[str, Config]  # as the evaluation runs them (setting_config)
    paths: dict[str, Path]  # where each came from
    template: Any
    cluster: str
    embedded: bool
    indexed: bool  # the corpus was put in now (not found there already)


@contextmanager
def prepared(
    args: argparse.Namespace, task: Callable[[str, int], Callable[[int], None]]
) -> Iterator[Prepared]:
    """Read the dataset and the configs, start the embedded cluster if asked, put the corpus
    into the index (once), and stop the embedded cluster after the block."""
    dataset = load_dataset(dataset_folder(args.dataset, getattr(args, "split", "test")))
    index = args.index or dataset.name
    configs = {}
    paths = {}
    for path in args.config:
        name = Path(path).stem
        if name in configs or name == "baseline":
            raise EvalError(f"{path}: setting name {name!r} is taken: rename the file")
        config = load_config(path)
        compile_rewriters(config, Path(path).parent)
        if match_route(config.routes, [index]) is None:
            raise EvalError(f"{name}: no route covers index {index!r}")
        configs[name] = config
        paths[name] = Path(path)
    template = _json_file(args.query, "--query") or DEFAULT_QUERY
    mapping = _json_file(args.mapping, "--mapping")
    store = None if args.no_cache else Path(args.cache).expanduser()
    embedded = None
    if args.embedded:
        from osmem_server import OsmemServer

        embedded = OsmemServer.start(japanese=False)
    try:
        upstream = embedded.url if embedded is not None else None
        cluster_urls = {upstream} if upstream else {c.upstream.url for c in configs.values()}
        if len(cluster_urls) != 1:
            raise EvalError(
                f"the configs point at different clusters ({', '.join(sorted(cluster_urls))}): use --embedded"
            )
        cluster = cluster_urls.pop()
        with httpx.Client(base_url=cluster, timeout=300) as client:
            try:
                indexed = ensure_index(
                    client, index, dataset, mapping, task(f"index {index}", dataset.corpus_size())
                )
            except httpx.HTTPError as e:
                raise EvalError(f"cluster {cluster}: {type(e).__name__}: {e}") from None
        runnable = {n: setting_config(c, upstream, store) for n, c in configs.items()}
        yield Prepared(dataset, index, runnable, paths, template, cluster, embedded is not None, indexed)
    finally:
        if embedded is not None:
            embedded.close()


def evaluate_settings(
    args: argparse.Namespace, backends: Mapping[str, Backend] | None = None
) -> dict[str, Any]:
    """Everything the command does but printing: the report as a dict."""
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
