"""``rerank-sidecar init``: a first config for a cluster, read from its own mappings.

Reads the indices and mappings of the cluster at ``--upstream`` (with the credentials given),
proposes a route per group of indices with the same text fields (titles first), picks a model
for this machine (Qwen3-Reranker-0.6B where CUDA is, the packaged all-MiniLM-L6-v2 on CPU),
writes a commented config that ``check-config`` accepts, and prints the command that serves it.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sidecar.config import ConfigError, parse_config
from sidecar.credentials import basic_auth

TITLE_NAMES = ("title", "name", "subject", "heading", "headline", "question")
MAX_FIELDS = 4  # a reranker reads a passage: the title and a few text fields, not every field


def text_fields(properties: dict[str, Any], prefix: str = "") -> tuple[list[str], list[str]]:
    """The ``text`` fields and the ``keyword`` fields of a mapping (dotted paths, objects
    followed; ``nested`` ones left out: a hit's text is its own, not its children's)."""
    texts: list[str] = []
    keywords: list[str] = []
    for name, spec in properties.items():
        if not isinstance(spec, dict):
            continue
        path = f"{prefix}{name}"
        kind = spec.get("type", "object")
        if kind in ("text", "match_only_text"):
            texts.append(path)
        elif kind == "keyword":
            keywords.append(path)
        elif kind == "object" and isinstance(spec.get("properties"), dict):
            t, k = text_fields(spec["properties"], path + ".")
            texts += t
            keywords += k
    return texts, keywords


def _ordered(fields: list[str]) -> list[str]:
    """Titles first, then the rest in mapping order."""

    def rank(f: str) -> int:
        leaf = f.rsplit(".", 1)[-1].lower()
        return 0 if leaf in TITLE_NAMES else 1

    return sorted(fields, key=rank)[:MAX_FIELDS]


# a route's model budget on each device: on a CPU a window seen for the first time is embedded
# (100 SciFact abstracts: 5.2 s on 2 cores), later ones come from the stored embeddings in
# milliseconds; on a GPU, Qwen3-Reranker-0.6B scores a 100-hit window well within a second
TIMEOUT_MS = {"cpu": 8000, "cuda": 1000}


def propose_routes(
    mappings: dict[str, Any], pattern: str | None, timeout_ms: int = TIMEOUT_MS["cpu"]
) -> list[dict[str, Any]]:
    """A route per group of indices that read the same fields; hidden indices (``.name``) are
    left out unless the pattern names them."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for index in sorted(mappings):
        if index.startswith(".") and not (pattern or "").startswith("."):
            continue
        props = (mappings[index].get("mappings") or {}).get("properties") or {}
        texts, keywords = text_fields(props)
        chosen = _ordered(texts or keywords)
        if chosen:
            groups.setdefault(tuple(chosen), []).append(index)
    routes = []
    for fields, indices in groups.items():
        route: dict[str, Any] = {
            "indices": indices,
            "model": "reranker",
            "window": 100,
            "fields": list(fields),
        }
        if len(fields) > 1:
            route["template"] = "\n".join("{" + f + "}" for f in fields)
        route["timeout_ms"] = timeout_ms
        routes.append(route)
    return routes


def free_port(preferred: int, avoid: set[int], host: str = "127.0.0.1") -> int:
    """The first port from ``preferred`` up that nothing listens on at ``host`` now and that is
    not in ``avoid`` (the cluster's own, the other listener's)."""
    for port in range(preferred, preferred + 200):
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise ConfigError(f"no free port on {host} from {preferred} to {preferred + 199}")


def pick_model() -> tuple[dict[str, Any], str]:
    """The model for this machine and why."""
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        cuda = False
    if cuda:
        model = {"backend": "qwen3", "model": "Qwen/Qwen3-Reranker-0.6B", "device": "cuda"}
        return model, "CUDA found: Qwen3-Reranker-0.6B on the GPU"
    model = {
        "backend": "bi-encoder",
        "model": "all-MiniLM-L6-v2",
        "device": "cpu",
        "embedding_store": "rerank-embeddings.sqlite",
    }
    return model, "no CUDA: the packaged all-MiniLM-L6-v2 on the CPU (set a remote model for a GPU server)"


class _Dumper(yaml.SafeDumper):
    """A text of several lines (a route's template) as one double-quoted line with ``\\n`` in
    it, as a person writes it, not folded over lines of the file."""


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _text)


def render(
    upstream: str,
    verify: bool,
    routes: list[dict[str, Any]],
    model: dict[str, Any],
    why: str,
    ca_certs: str | None = None,
    ports: tuple[int, int] = (9200, 9301),
) -> str:
    """The config as commented YAML; ``ports``: the proxy's and the admin API's."""

    def block(data: Any, indent: int) -> str:
        text = yaml.dump(
            data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
        )
        return "".join(" " * indent + line + "\n" for line in text.splitlines())

    lines = [
        "# Written by rerank-sidecar init from the cluster's mappings: check the routes' fields, then",
        "#   rerank-sidecar check-config THIS_FILE && rerank-sidecar serve --config THIS_FILE",
        f"listen: 127.0.0.1:{ports[0]}          # where your clients connect instead of the cluster: a port",
        "#   that was free when init ran and is not the cluster's (serve --listen HOST:PORT overrides it)",
        "upstream:",
        f"  url: {json.dumps(upstream)}",
        f"  verify: {'true' if verify else 'false'}          # TLS certificate checks (ca_certs: a CA file)",
        *([f"  ca_certs: {json.dumps(ca_certs)}"] if ca_certs else []),
        "  timeout_s: 30",
        "admin:",
        f"  listen: 127.0.0.1:{ports[1]}        # the admin API and the TUI; off loopback it needs token_env",
        "models:",
        f"  reranker:                     # {why}",
        block(model, 4).rstrip("\n"),
        "# A route per group of indices with the same text fields (titles first); a search on any",
        "# other index passes through untouched. window: candidates reranked per search;",
        "# timeout_ms: past it a search answers in the cluster's order (and its later pages too).",
        *(
            [
                "# On a CPU a window seen for the first time is embedded (seconds; the embeddings are",
                "# kept in embedding_store), later ones take milliseconds: lower timeout_ms once warm.",
            ]
            if model["device"] == "cpu"
            else []
        ),
        "routes:",
        block(routes, 2).rstrip("\n") if routes else "  []  # no index with text fields was found",
    ]
    return "\n".join(lines) + "\n"


def cmd_init(args: argparse.Namespace) -> int:
    """Read the cluster's mappings, write a config, print how to serve it."""
    import httpx  # for this command alone: the parser of every command stays quick

    auth = basic_auth(args.auth_env)
    verify: bool | str = args.ca_certs or not args.insecure
    path = f"/{args.index}/_mapping" if args.index else "/_mapping"
    try:
        with httpx.Client(base_url=args.upstream, auth=auth, verify=verify, timeout=30, trust_env=False) as c:
            r = c.get(path)
    except httpx.HTTPError as e:
        raise ConfigError(f"--upstream: cannot read {args.upstream}{path}: {type(e).__name__}: {e}") from None
    if r.status_code != 200:
        raise ConfigError(f"--upstream: {args.upstream}{path} answered HTTP {r.status_code}: {r.text[:200]}")
    model, why = pick_model()
    if "embedding_store" in model:  # beside the config, wherever serve is started from
        out_path = Path(args.out).resolve()
        model["embedding_store"] = str(out_path.with_name(out_path.stem + "-embeddings.sqlite"))
    routes = propose_routes(r.json(), args.index, TIMEOUT_MS[model["device"]])
    cluster = urlsplit(args.upstream)
    cluster_port = cluster.port or (443 if cluster.scheme == "https" else 9200)
    proxy = free_port(9200, {cluster_port})
    admin = free_port(9301, {cluster_port, proxy})
    text = render(
        args.upstream.rstrip("/"), not args.insecure, routes, model, why, args.ca_certs, (proxy, admin)
    )
    config = parse_config(yaml.safe_load(text))  # what check-config reads: never write a config it refuses
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"--out: {out} exists (--force to replace it)")
    out.write_text(text, encoding="utf-8")
    for route in config.routes:
        print(f"route {route.name}: fields {', '.join(route.fields)}")
    if not config.routes:
        print("no index with text fields: the config reranks nothing yet", file=sys.stderr)
    print(f"wrote {out} ({why}); the sidecar listens on 127.0.0.1:{proxy}, its admin API on {admin}")
    print(f"serve it: rerank-sidecar serve --config {out}")
    return 0


def add_parser(sub: Any) -> None:
    """The init subcommand's arguments."""
    p = sub.add_parser("init", help="write a first config from a cluster's mappings")
    p.add_argument("--upstream", required=True, help="the cluster's URL, e.g. https://localhost:9200")
    p.add_argument("--index", help="only indices matching this pattern (default: all but hidden ones)")
    p.add_argument("--out", default="sidecar.yaml", help="the config file to write (default sidecar.yaml)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--auth-env", help="env var holding user:password for the cluster")
    p.add_argument("--ca-certs", help="CA bundle for an https cluster")
    p.add_argument("--insecure", action="store_true", help="no TLS certificate checks (and verify: false)")
    p.set_defaults(func=cmd_init)
