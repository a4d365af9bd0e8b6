"""A route's ``warmup``: at start, in the background, the first documents of its indices are
read from the cluster (``match_all``, the route's fields) and scored by its model, a batch at a
time, so that a bi-encoder holds their embeddings before the first searches need them. Its
progress is in health and stats; a failure is logged and leaves the route serving as it would."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from sidecar.credentials import basic_auth
from sidecar.documents import window_texts
from sidecar.engine.protocol import ScoreRequest
from sidecar.search.snapshot import CompiledRoute
from sidecar.upstream import UpstreamError, UpstreamPool

log = logging.getLogger(__name__)

BATCH = 64  # documents a model request: searches that arrive meanwhile are not held up long
QUERY = "warm-up"


async def warm(compiled: CompiledRoute, upstream: UpstreamPool, progress: dict[str, Any]) -> None:
    """Read and score the route's warm-up documents, counting them in ``progress``."""
    route = compiled.config
    assert route.warmup is not None
    progress.update(state="reading", documents=0, total=None, error=None)
    try:
        texts = await _texts(compiled, upstream)
        progress.update(state="scoring", total=len(texts))
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            await compiled.model.score(ScoreRequest.of([QUERY], batch, None, 300.0))
            progress["documents"] += len(batch)
        progress["state"] = "done"
        log.info("route %s: %d documents warmed up", route.name, len(texts))
    except Exception as e:  # the route serves as it would without
        progress.update(state="failed", error=f"{type(e).__name__}: {e}"[:300])
        log.warning("route %s: warm-up failed: %s", route.name, progress["error"])


async def _texts(compiled: CompiledRoute, upstream: UpstreamPool) -> list[str]:
    route = compiled.config
    assert route.warmup is not None
    body = {"size": route.warmup.documents, "query": {"match_all": {}}, "_source": list(route.fields)}
    headers = [(b"content-type", b"application/json")]
    auth = basic_auth(route.warmup.basic_auth_env, f"routes.{route.name}.warmup.basic_auth_env")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers.append((b"authorization", f"Basic {token}".encode()))
    path = "/" + ",".join(route.indices) + "/_search"
    try:
        resp = await upstream.request("POST", path.encode(), headers, json.dumps(body).encode())
        try:
            content = await resp.read()
        finally:
            resp.release()
    except UpstreamError as e:
        raise RuntimeError(f"the cluster did not answer {path}: {e}") from None
    if resp.status != 200:
        raise RuntimeError(f"the cluster answered {path} with HTTP {resp.status}: {content[:200]!r}")
    hits = json.loads(content).get("hits", {}).get("hits", [])
    texts, _ = window_texts([h.get("_source") for h in hits], route.fields, route.template, route.max_chars)
    return [t for t in texts if t]
