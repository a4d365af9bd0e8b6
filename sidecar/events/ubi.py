"""User Behavior Insights events as they pass: which writes carry them, which of them are
clicks, and the ``ubi_queries`` record of a search the sidecar served.

An app writes its UBI events to ``ubi_events`` (``/ubi_events/_doc``, ``_create``,
``_bulk`` or ``/_bulk``) through the sidecar as it would to the cluster; the request goes to
the cluster unchanged and undelayed, and once the cluster has taken it (2xx) the sidecar
reads a copy of the body for clicks."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

# a copy of a generic /_bulk body is kept up to this size (UBI batches are small; an indexing
# bulk past it is not read for events)
TEE_LIMIT = 4 * 1024 * 1024

_DOC_PATH = re.compile(r"^/(?P<index>[^/]+)/(?:_doc|_create)(?:/[^/]+)?/?$")
_BULK_PATH = re.compile(r"^/(?:(?P<index>[^/]+)/)?_bulk/?$")


@dataclass(frozen=True)
class Click:
    """A UBI event that counts as a click on a search's hit."""

    query_id: str
    object_id: str
    action: str
    time: float
    client_id: str | None = None  # the event's client_id: whose click it says it is


def write_kind(method: str, path: str, events_index: str) -> str | None:
    """``doc`` or ``bulk`` when the request may write UBI events to ``events_index``."""
    if method not in ("POST", "PUT"):
        return None
    m = _DOC_PATH.match(path)
    if m:
        return "doc" if unquote(m.group("index")) == events_index else None
    m = _BULK_PATH.match(path)
    if m and (m.group("index") is None or unquote(m.group("index")) == events_index):
        return "bulk"
    return None


def documents(
    kind: str, body: bytes, path: str, events_index: str, stored: Sequence[bool] | None = None
) -> Iterator[Any]:
    """The UBI event documents a write body carries (what is not JSON is skipped: the
    cluster, which took the write, is the judge of its own input). ``stored``: for a bulk, per
    action, whether the cluster stored its item (its answer's ``items``): the others are left
    out, as they are not in the index."""
    if kind == "doc":
        try:
            yield json.loads(body)
        except (ValueError, RecursionError):
            return
        return
    m = _BULK_PATH.match(path)
    default = unquote(m.group("index")) if m and m.group("index") else None
    if default is None and events_index.encode() not in body:
        return  # a bulk that names no UBI index: not read further
    lines = iter(body.splitlines())
    position = -1  # the action's place in the bulk: its item in the answer
    for line in lines:
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(action, dict) or len(action) != 1:
            continue
        position += 1
        ((op, meta),) = action.items()
        if op == "delete":
            continue
        source = next(lines, b"")
        index = meta.get("_index", default) if isinstance(meta, dict) else default
        if stored is not None and not (position < len(stored) and stored[position]):
            continue
        if op in ("index", "create") and index == events_index:
            try:
                yield json.loads(source)
            except (ValueError, RecursionError):
                continue


def stored_items(answer: bytes) -> list[bool] | None:
    """Per item of a bulk's answer, whether the cluster stored it (a 2xx status); None when the
    answer cannot be read (then no event of the bulk is taken)."""
    try:
        doc = json.loads(answer)
    except (ValueError, RecursionError):
        return None
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        result = next(iter(item.values()), None) if isinstance(item, dict) and item else None
        status = result.get("status") if isinstance(result, dict) else None
        out.append(isinstance(status, int) and 200 <= status < 300)
    return out


def clicks(docs: Iterable[Any], actions: Sequence[str]) -> list[Click]:
    """The events among ``docs`` that are clicks (``action_name`` in ``actions``) on an object
    of a search (``query_id`` and ``event_attributes.object.object_id``)."""
    out = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("action_name") not in actions:
            continue
        query_id = doc.get("query_id")
        attrs = doc.get("event_attributes")
        obj = attrs.get("object") if isinstance(attrs, dict) else None
        object_id = obj.get("object_id") if isinstance(obj, dict) else doc.get("object_id")
        if not isinstance(query_id, (str, int)) or not isinstance(object_id, (str, int)):
            continue
        client = doc.get("client_id")
        client_id = str(client) if isinstance(client, (str, int)) and not isinstance(client, bool) else None
        out.append(Click(str(query_id), str(object_id), str(doc["action_name"]), time.time(), client_id))
    return out


def query_record(
    query_id: str,
    user_query: str | None,
    client_id: Any,
    object_ids: Sequence[Any],
    attributes: dict[str, Any],
    when: float,
) -> dict[str, Any]:
    """A ``ubi_queries`` document as the UBI plugin writes one (``query`` is left out: the
    client's body may hold what its owner does not want copied)."""
    return {
        "query_id": query_id,
        "query_response_id": f"{query_id}-response",
        "user_query": user_query,
        "client_id": client_id,
        "query_response_object_ids": [str(i) for i in object_ids],
        "query_attributes": attributes,
        "timestamp": int(when * 1000),
        "application": "rerank-sidecar",
    }
