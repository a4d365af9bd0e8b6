"""What every eval command does first: a progress display, the dataset indexed in the cluster
(the embedded one, or the user's), the config checked against it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from sidecar.config import Config, load_config
from sidecar.embedded import stop_embedded
from sidecar.eval.beir import dataset_folder
from sidecar.eval.dataset import Dataset, load_dataset
from sidecar.eval.index import DEFAULT_QUERY, ensure_index
from sidecar.eval.runner import EvalError, setting_config
from sidecar.rewrite.load import compile_rewriters
from sidecar.search.routes import match_route


@contextmanager
def progress(
    enabled: bool, every_s: float = 5.0, stream: TextIO | None = None
) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Progress on stderr: ``task(description, total)`` gives an ``advance(n)``. In a terminal,
    bars with the time spent and left; elsewhere (a CI log, a pipe), a line per task at most
    every ``every_s`` seconds with its count, rate and time left, and one when it is done."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled:
        yield lambda description, total: lambda n: None
        return
    if not console.is_terminal:
        yield _lines(stream or sys.stderr, every_s)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bars:

        def task(description: str, total: int) -> Callable[[int], None]:
            tid = bars.add_task(description, total=total)
            return lambda n: bars.advance(tid, n)

        yield task


def _lines(stream: TextIO, every_s: float) -> Callable[[str, int], Callable[[int], None]]:
    """Progress as log lines: ``eval: baseline 120/300 (40%) 12 s, eta 18 s``."""

    def task(description: str, total: int) -> Callable[[int], None]:
        started = last = time.monotonic()
        done = 0

        def advance(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            finished = done >= total
            if not finished and now - last < every_s:
                return
            last = now
            spent = now - started
            share = f" ({done / total:.0%})" if total else ""
            left = f", eta {spent / done * (total - done):.0f} s" if done and not finished else ""
            end = " done" if finished else ""
            stream.write(f"eval: {description} {done}/{total}{share} {spent:.0f} s{left}{end}\n")
            stream.flush()

        return advance

    return task


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
            stop_embedded(embedded)
