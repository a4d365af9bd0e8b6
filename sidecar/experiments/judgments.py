"""``rerank-sidecar judgments``: recorded searches and clicks turned into a BEIR-layout
folder (corpus.jsonl, queries.jsonl, qrels.tsv) that ``eval`` and ``eval --tune`` read, so
offline figures come from real traffic.

The click model (skip-above, Joachims 2002, with a majority vote): on each search with at
least one click, a clicked hit is a vote for relevant, a hit shown above the last click and
not clicked a vote for not relevant, and hits below the last click get no vote (the user
may never have read them). Over all of a query's searches a hit is relevant (1) when at
least half of its votes say so, else not (0). Queries are grouped by route and query text;
a query with no relevant hit is left out (NDCG has nothing to find there). The documents'
text is read from the cluster (the route's fields: the first as ``title``, the rest joined
as ``text``).
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.config import Config, ConfigError, load_config
from sidecar.credentials import basic_auth
from sidecar.documents import field_value
from sidecar.events.event import SearchEvent
from sidecar.jsontext import json_text

if TYPE_CHECKING:
    import httpx


@dataclass
class _Query:
    route: str
    text: str
    indices: set[str] = field(default_factory=set)
    votes: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )  # id -> [yes, no]
    searches: int = 0


def _searches(db: sqlite3.Connection) -> Iterator[SearchEvent]:
    for (body,) in db.execute("SELECT body FROM events WHERE body LIKE '%\"query_id\"%' ORDER BY time"):
        event = SearchEvent.model_validate_json(body)
        if event.query_id and event.served and event.query:
            yield event


def collect(path: Path) -> tuple[list[_Query], int, int]:
    """The judged queries from an events SQLite file, and how many searches and clicks it held."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            clicks: dict[str, set[str]] = defaultdict(set)
            for query_id, object_id in db.execute("SELECT query_id, object_id FROM clicks"):
                clicks[query_id].add(object_id)
            searches = list(_searches(db))
    except sqlite3.Error as e:
        raise ConfigError(f"{path}: cannot read events: {e}") from None
    queries: dict[tuple[str, str], _Query] = {}
    n_clicks = 0
    for event in searches:
        assert event.query_id is not None and event.served is not None and event.query is not None
        clicked = clicks.get(event.query_id, set())
        shown = [str(i) for i in event.served]
        positions = [p for p, i in enumerate(shown) if i in clicked]
        if not positions:
            continue
        n_clicks += len(positions)
        key = (str(event.route), " ".join(event.query.split()))
        q = queries.setdefault(key, _Query(*key))
        q.indices.add(event.index)
        q.searches += 1
        for p, doc in enumerate(shown[: max(positions) + 1]):
            q.votes[doc][0 if p in positions else 1] += 1
    return list(queries.values()), len(searches), n_clicks


def _documents(
    client: httpx.Client, indices: set[str], ids: list[str], fields: list[str]
) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for index in sorted(indices):
        for start in range(0, len(ids), 500):
            chunk = [i for i in ids[start : start + 500] if i not in found]
            if not chunk:
                continue
            body = {"query": {"ids": {"values": chunk}}, "size": len(chunk), "_source": fields}
            r = client.post(f"/{index}/_search", json=body)
            if r.status_code != 200:
                raise ConfigError(f"cluster: {index}/_search answered HTTP {r.status_code}: {r.text[:200]}")
            for hit in r.json()["hits"]["hits"]:
                source = hit.get("_source") or {}
                title = field_value(source, fields[0])
                text = "\n".join(t for t in (field_value(source, f) for f in fields[1:]) if t)
                found[str(hit["_id"])] = {"_id": str(hit["_id"]), "title": title, "text": text or title}
    return found


def write(config: Config, events: Path, out: Path, client: httpx.Client) -> dict[str, int]:
    """Write the folder; returns its counts."""
    queries, n_searches, n_clicks = collect(events)
    routes = {r.name: r for r in config.routes}
    corpus: dict[str, dict[str, str]] = {}
    judged: list[tuple[str, str, dict[str, int]]] = []
    for q in queries:
        grades = {doc: int(yes >= no) for doc, (yes, no) in q.votes.items()}
        if not any(grades.values()):
            continue
        route = routes.get(q.route)
        if route is None:
            continue  # a route no longer configured: its fields are unknown
        missing = [d for d in grades if d not in corpus]
        corpus |= _documents(client, q.indices, missing, route.fields)
        grades = {d: g for d, g in grades.items() if d in corpus}
        if any(grades.values()):
            judged.append((f"q{len(judged) + 1}", q.text, grades))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for record in corpus.values():
            f.write(json_text(record) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text, _ in judged:
            f.write(json_text({"_id": qid, "text": text}) + "\n")
    with (out / "qrels.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, _, grades in judged:
            for doc, grade in grades.items():
                f.write(f"{qid}\t{doc}\t{grade}\n")
    counts = {
        "searches": n_searches,
        "clicks": n_clicks,
        "queries": len(judged),
        "judgments": sum(len(g) for _, _, g in judged),
        "relevant": sum(sum(g.values()) for _, _, g in judged),
        "documents": len(corpus),
    }
    (out / "SOURCE.md").write_text(
        "# Judgments from clicks\n\n"
        f"Written by `rerank-sidecar judgments` from {events}: {counts['searches']} searches with a"
        f" query_id, {counts['clicks']} clicks on their pages; {counts['queries']} queries with"
        f" {counts['judgments']} judgments ({counts['relevant']} relevant) over {counts['documents']}"
        " documents read from the cluster.\n\n"
        "Click model: skip-above with a majority vote. A clicked hit is a vote for relevant, a hit"
        " shown above the last click and not clicked a vote for not relevant, hits below the last"
        " click no vote; a hit is relevant (1) when at least half of its votes say so.\n",
        encoding="utf-8",
    )
    return counts


def cmd_judgments(args: argparse.Namespace) -> int:
    """Read the recorded searches and clicks, write the folder, print its counts."""
    import httpx  # for this command alone: the parser of every command stays quick

    config = load_config(args.config)
    events = Path(args.events or config.events.sqlite or "")
    if not events.name or not events.is_file():
        raise ConfigError("--events: no events SQLite file (set events.sqlite in the config, or --events)")
    verify: bool | str = args.ca_certs or config.upstream.ca_certs or config.upstream.verify
    auth = basic_auth(args.auth_env)
    url = args.upstream or config.upstream.url
    try:
        with httpx.Client(base_url=url, auth=auth, verify=verify, timeout=60, trust_env=False) as client:
            counts = write(config, events, Path(args.out), client)
    except httpx.HTTPError as e:
        raise ConfigError(f"cluster {url}: {type(e).__name__}: {e}") from None
    print(
        f"{args.out}: {counts['queries']} queries, {counts['judgments']} judgments"
        f" ({counts['relevant']} relevant), {counts['documents']} documents"
        f" from {counts['searches']} searches and {counts['clicks']} clicks"
    )
    if counts["queries"]:
        print(f"evaluate on it: rerank-sidecar eval {args.out} --config YOUR_ROUTE.yaml --embedded")
    return 0


def add_parser(sub: Any) -> None:
    """The judgments subcommand's arguments."""
    p = sub.add_parser(
        "judgments", help="turn recorded searches and clicks into a judged dataset (BEIR layout)"
    )
    p.add_argument(
        "--config", required=True, help="the sidecar's config (its events.sqlite, upstream, routes)"
    )
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--events", help="events SQLite file (default: events.sqlite of the config)")
    p.add_argument("--upstream", help="read documents from this cluster (default: upstream.url)")
    p.add_argument("--auth-env", help="env var holding user:password for the cluster")
    p.add_argument("--ca-certs", help="CA bundle for an https cluster")
    p.set_defaults(func=cmd_judgments)
