"""Put a dataset's corpus into the cluster, once: an index that already holds it is reused."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from sidecar.eval.dataset import Dataset

COMBINED = "title_text"
DEFAULT_MAPPING: dict[str, Any] = {
    "properties": {
        "title": {"type": "text", "analyzer": "english"},
        "text": {"type": "text", "analyzer": "english"},
        COMBINED: {"type": "text", "analyzer": "english"},
    }
}
DEFAULT_QUERY: dict[str, Any] = {"query": {"match": {COMBINED: "{query}"}}}
_BATCH = 1000
_METADATA = re.compile(r"\{metadata\.([A-Za-z0-9_]+)\}")


class IndexingError(RuntimeError):
    """The cluster refused the index or the documents."""


def fill(template: Any, query: str, metadata: Mapping[str, str] | None = None) -> Any:
    """The template with ``{query}`` and each ``{metadata.KEY}`` filled in wherever a string
    holds them (a key the query's metadata lacks becomes an empty string)."""
    if isinstance(template, dict):
        return {k: fill(v, query, metadata) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, query, metadata) for v in template]
    if isinstance(template, str) and "{" in template:
        out = template.replace("{query}", query)
        return _METADATA.sub(lambda m: (metadata or {}).get(m.group(1), ""), out)
    return template


def without_rerank_ext(template: Any) -> Any:
    """The search body as the cluster itself takes it: ``ext.rerank`` (the sidecar's) removed."""
    if not isinstance(template, dict) or not isinstance(template.get("ext"), dict):
        return template
    ext = {k: v for k, v in template["ext"].items() if k != "rerank"}
    out = {k: v for k, v in template.items() if k != "ext"}
    return {**out, "ext": ext} if ext else out


def ensure_index(
    client: httpx.Client,
    index: str,
    dataset: Dataset,
    mapping: dict[str, Any] | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> bool:
    """Index the corpus unless ``index`` already holds as many documents; True when it indexed."""
    size = dataset.corpus_size()
    r = client.get(f"/{index}/_count")
    if r.status_code == 200 and r.json().get("count") == size:
        advance(size)
        return False
    client.delete(f"/{index}")
    r = client.put(f"/{index}", json={"mappings": mapping or DEFAULT_MAPPING})
    if r.status_code != 200:
        raise IndexingError(f"cannot create index {index}: HTTP {r.status_code}: {r.text[:300]}")
    batch: list[str] = []
    for doc in dataset.corpus():
        source = {k: v for k, v in doc.items() if k != "_id"}
        source[COMBINED] = f"{doc['title']}\n{doc['text']}"
        batch.append(json.dumps({"index": {"_index": index, "_id": doc["_id"]}}))
        batch.append(json.dumps(source, ensure_ascii=False))
        if len(batch) >= 2 * _BATCH:
            _bulk(client, batch)
            advance(len(batch) // 2)
            batch = []
    if batch:
        _bulk(client, batch)
        advance(len(batch) // 2)
    client.post(f"/{index}/_refresh")
    return True


def _bulk(client: httpx.Client, lines: list[str]) -> None:
    r = client.post(
        "/_bulk", content="\n".join(lines) + "\n", headers={"content-type": "application/x-ndjson"}
    )
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code != 200 or body.get("errors"):
        first = next((i for i in body.get("items", []) if next(iter(i.values())).get("error")), None)
        reason = json.dumps(next(iter(first.values()))["error"])[:300] if first else r.text[:300]
        raise IndexingError(f"bulk indexing failed: {reason}")
