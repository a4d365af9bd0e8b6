"""``rerank-sidecar eval --tune``: collect, search, cross-validate, print; ``--write`` the
chosen setting into the config file (comments kept) or ``--apply`` it to a running sidecar."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from sidecar.config import Config, ConfigError, RouteConfig, load_config, parse_config
from sidecar.engine.calibration import Calibration
from sidecar.engine.protocol import Backend
from sidecar.engine.registry import model_calibration
from sidecar.eval.beir import dataset_folder
from sidecar.eval.collect import Window, collect
from sidecar.eval.metrics import evaluate, mean
from sidecar.eval.prepare import prepared, progress
from sidecar.eval.runner import EvalError
from sidecar.eval.tune import TuneResult, grid, tune
from sidecar.search.routes import match_route

# candidates collected per query: the largest window the search tries
COLLECT_WINDOW = 100


def run_tune(
    args: argparse.Namespace, backends: Mapping[str, Backend] | None = None
) -> tuple[dict[str, Any], TuneResult]:
    """Collect each retrieval setting through a sidecar, then search the grid offline."""
    if len(args.config) != 1:
        raise EvalError("--tune takes exactly one --config: the route to tune")
    with progress(not args.quiet) as task, prepared(args, task) as p:
        (name, config), path = next(iter(p.configs.items())), p.paths[next(iter(p.paths))]
        route_index = match_route(config.routes, [p.index])
        assert route_index is not None
        route = config.routes[route_index]
        retrievals = ["original", "expanded"] if route.rewrite is not None else ["original"]
        window = max(COLLECT_WINDOW, route.window)
        n = len(p.dataset.queries)

        async def collect_all() -> dict[str, dict[str, Window]]:
            out = {}
            for retrieval in retrievals:
                cfg = config
                if route.rewrite is not None:
                    cfg = _with_route(config, route_index, _retrieval(route, retrieval))
                out[retrieval] = await collect(
                    cfg, p.index, p.dataset, p.template, window, args.concurrency,
                    task(f"collect ({retrieval})", n), backends, path,
                )  # fmt: skip
            return out

        collections = asyncio.run(collect_all())
        settings = len(grid(route, retrievals, window))
        cal = model_calibration(config.models[route.model])
        result = tune(route, collections, p.dataset.qrels, args.folds, task("settings", settings), cal)
    first = collections[retrievals[0]]
    cluster = mean(evaluate(p.dataset.qrels, {q: list(w.ids) for q, w in first.items()}))
    hits = evaluate(p.dataset.qrels, {q: list(w.ids) for q, w in first.items()})
    report = {
        "dataset": str(p.dataset.path),
        "queries": n,
        "config": str(path),
        "route": route_index,
        "model": route.model,
        "cluster": {"ndcg@10": cluster["ndcg@10"], "hit@1": sum(m["hit@1"] for m in hits.values())},
        "route_config": route,
        "name": name,
    }
    return report, result


def _retrieval(route: RouteConfig, retrieval: str) -> RouteConfig:
    assert route.rewrite is not None
    return route.model_copy(update={"rewrite": route.rewrite.model_copy(update={"retrieval": retrieval})})


def _with_route(config: Config, index: int, route: RouteConfig) -> Config:
    routes = list(config.routes)
    routes[index] = route
    return config.model_copy(update={"routes": routes})


def _figures(label: str, m: Mapping[str, float], n: int) -> str:
    return f"{label:<34} NDCG@10 {m['ndcg@10']:.4f}  Hit@1 {m['hit@1']:g}/{n}"


def render(report: Mapping[str, Any], result: TuneResult, calibrate: bool) -> str:
    """The tuning report as text: per fold, held-out figures, the best setting."""
    route: RouteConfig = report["route_config"]
    n = report["queries"]
    lines = [
        f"{report['dataset']}: {n} queries; route {report['route']} of {report['config']} "
        f"({route.model}); {len(result.folds)} folds over {result.settings:,} settings",
        _figures("cluster alone", report["cluster"], n),
        "",
        f"{'fold':>4} {'queries':>8} {'tuned':>8} {'config':>8}  chosen on the other folds",
    ]
    for i, f in enumerate(result.folds, 1):
        chosen = f.chosen.describe(route)
        lines.append(f"{i:>4} {f.queries:>8} {f.tuned:>8.4f} {f.configured:>8.4f}  {chosen}")
    lines += [
        "",
        _figures("held out (each query once): tuned", result.held_out, n),
        _figures("as configured", result.configured, n),
        "",
        f"best on all {n} queries (in-sample NDCG@10 {result.best_in_sample:.4f}):"
        f" {result.best.describe(route)}"
        if result.improves
        else "no setting beat the configured route on held-out queries: keep it as it is",
    ]
    changes = result.best.changes(route)
    if changes:
        lines.append("  routes[" + str(report["route"]) + "]: " + _flow(changes))
    if result.calibration is not None:
        c = result.calibration
        lines.append(
            f"calibration of {route.model} fitted on the judged windows:"
            f" center {c.center:.4f}, scale {c.scale:.4f}" + ("" if calibrate else " (--calibrate writes it)")
        )
    return "\n".join(lines)


def _flow(changes: Mapping[str, Any]) -> str:
    parts = []
    for k, v in changes.items():
        parts.append(f"{k}: {{{_flow(v)}}}" if isinstance(v, dict) else f"{k}: {'null' if v is None else v}")
    return ", ".join(parts)


def write_config(
    path: Path, route_index: int, changes: Mapping[str, Any], model: str, calibration: Calibration | None
) -> None:
    """Put ``changes`` into the route of a YAML config (and the model's calibration), keeping
    its comments and layout; the result must load, or the file is left as it was."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the layout of the shipped configs
    yaml.width = 4096
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise EvalError(f"{path}: cannot read: {e.strerror}") from None
    try:
        route = doc["routes"][route_index]
    except (KeyError, IndexError, TypeError):
        raise EvalError(f"{path}: no routes.{route_index} to write into") from None
    _merge(route, changes)
    if calibration is not None:
        entry = doc["models"][model]
        entry["calibration"] = {"center": round(calibration.center, 4), "scale": round(calibration.scale, 4)}
    out = io.StringIO()
    yaml.dump(doc, out)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(out.getvalue())
    try:
        load_config(tmp)
    except ConfigError as e:
        os.unlink(tmp)
        raise EvalError(f"{path}: the tuned config would not load ({e}); left unchanged") from None
    os.replace(tmp, path)


def _merge(target: Any, changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict):
            if target.get(key) is None:
                target[key] = {}
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)  # the key's default: no threshold
        else:
            target[key] = value


def apply_remote(
    url: str,
    index: str,
    changes: Mapping[str, Any],
    model: str,
    calibration: Calibration | None,
    token: str | None,
) -> str:
    """``PUT /_sidecar/config`` on a running sidecar with the route that serves ``index`` changed."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=120, headers=headers) as client:
        try:
            r = client.get("/_sidecar/config")
            if r.status_code != 200:
                raise EvalError(f"{url}: GET /_sidecar/config answered {r.status_code}: {r.text[:300]}")
            data = r.json()
            live = parse_config(data)
            route_index = match_route(live.routes, [index])
            if route_index is None:
                raise EvalError(f"{url}: no route of the running config covers index {index!r}")
            _merge(data["routes"][route_index], changes)
            if calibration is not None:
                data["models"][model]["calibration"] = {
                    "center": calibration.center,
                    "scale": calibration.scale,
                }
            r = client.put("/_sidecar/config", json=data)
        except httpx.HTTPError as e:
            raise EvalError(f"{url}: {type(e).__name__}: {e}") from None
    if r.status_code != 200:
        raise EvalError(f"{url}: PUT /_sidecar/config answered {r.status_code}: {r.text[:300]}")
    return f"applied to routes.{route_index} of {url}"


def cmd_tune(args: argparse.Namespace) -> int:
    """``eval --tune``: print the report; write or apply the best setting when asked."""
    report, result = run_tune(args)
    route: RouteConfig = report["route_config"]
    print(render(report, result, args.calibrate))
    changes = result.best.changes(route)
    calibration = result.calibration if args.calibrate else None
    if not changes and calibration is None:
        if args.write or args.apply:
            print("nothing to write or apply")
        return 0
    if args.write:
        write_config(Path(args.write), report["route"], changes, route.model, calibration)
        print(f"wrote {args.write}")
    if args.apply:
        token = os.environ.get(args.token_env) if args.token_env else None
        index = args.index or dataset_folder(args.dataset, getattr(args, "split", "test")).resolve().name
        print(apply_remote(args.apply, index, changes, route.model, calibration, token))
    return 0
