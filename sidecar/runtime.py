"""The one typed object of shared runtime state, built and torn down with the server."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from sidecar.config import Config
from sidecar.engine.protocol import Backend
from sidecar.engine.registry import build_backend
from sidecar.engine.runner import InferenceRunner
from sidecar.proxy.upstream import UpstreamPool

log = logging.getLogger(__name__)


class ModelTimeout(Exception):
    """Scoring did not finish within the route's budget."""


@dataclass
class Runtime:
    """Config, the upstream pool, the backends and the inference thread."""

    config: Config
    upstream: UpstreamPool
    backends: Mapping[str, Backend]
    runner: InferenceRunner

    async def score(self, model: str, query: str, documents: Sequence[str], timeout_s: float) -> list[float]:
        """Score documents on the inference thread within ``timeout_s``; raise ModelTimeout past it."""
        backend = self.backends[model]
        try:
            scores = await asyncio.wait_for(
                self.runner.run(lambda: backend.score(query, documents)), timeout=timeout_s
            )
        except asyncio.TimeoutError:
            raise ModelTimeout(f"model {model!r} took longer than {timeout_s * 1000:.0f} ms") from None
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
    """Load the models, start the inference thread, open the upstream pool."""
    async with AsyncExitStack() as stack:
        runner = InferenceRunner()
        runner.start()
        stack.callback(runner.stop)
        loaded: dict[str, Backend] = dict(backends or {})
        used = {r.model for r in config.routes}
        for name, spec in config.models.items():
            if name in loaded or name not in used:
                continue
            log.info("loading model %s (%s: %s)", name, spec.backend, spec.model)
            loaded[name] = await runner.run(lambda n=name, s=spec: build_backend(n, s))  # type: ignore[misc]
            await runner.run(loaded[name].warm_up)
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
        yield Runtime(config, pool, loaded, runner)
