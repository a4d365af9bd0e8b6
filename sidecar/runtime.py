"""The one typed object of shared runtime state, built and torn down with the server."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from sidecar.config import Config
from sidecar.engine.batcher import Batcher
from sidecar.engine.protocol import Backend
from sidecar.engine.registry import make_batcher
from sidecar.proxy.upstream import UpstreamPool

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Config, the upstream pool, and each model behind its batcher."""

    config: Config
    upstream: UpstreamPool
    batchers: Mapping[str, Batcher]

    @property
    def backends(self) -> dict[str, Backend]:
        """The loaded backends by model name."""
        return {name: b.backend for name, b in self.batchers.items() if b.backend is not None}

    async def score(
        self,
        model: str,
        query: str,
        documents: Sequence[str],
        timeout_s: float,
        instruction: str | None = None,
    ) -> list[float]:
        """Scores within ``timeout_s``: ModelTimeout past it, Overloaded when the queue cannot make it."""
        scores = await self.batchers[model].score(query, documents, instruction, timeout_s)
        if len(scores) != len(documents):
            raise ValueError(f"model {model!r} returned {len(scores)} scores for {len(documents)} documents")
        return scores


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """TLS settings for an https upstream: a CA bundle, the system store, or (explicitly) no checks."""
    up = config.upstream
    if not up.url.startswith("https://"):
        return None
    ctx = ssl.create_default_context(cafile=up.ca_certs)
    if not up.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@asynccontextmanager
async def open_runtime(
    config: Config, *, backends: Mapping[str, Backend] | None = None
) -> AsyncIterator[Runtime]:
    """Load each routed model on its own inference thread, open the upstream pool.

    ``backends`` supplies ready backends by model name in place of loading them (tests).
    """
    async with AsyncExitStack() as stack:
        batchers: dict[str, Batcher] = {}
        used = {r.model for r in config.routes}
        for name, spec in config.models.items():
            if name not in used:
                continue
            given = (backends or {}).get(name)
            log.info("loading model %s (%s: %s)", name, spec.backend, spec.model)
            batcher = make_batcher(name, spec, (lambda b=given: b) if given is not None else None)  # type: ignore[misc]
            stack.callback(batcher.stop)
            await batcher.start()
            batchers[name] = batcher
        up = config.upstream
        pool = UpstreamPool(
            up.url,
            ssl_context=ssl_context(config),
            connect_timeout=up.connect_timeout_s,
            read_timeout=up.timeout_s,
            max_connections=up.max_connections,
            max_idle=up.max_keepalive,
        )
        stack.push_async_callback(pool.aclose)
        yield Runtime(config, pool, batchers)
