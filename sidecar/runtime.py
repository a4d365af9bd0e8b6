"""The one typed object of shared runtime state, built and torn down with the server."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.config import Config, ConfigError
from sidecar.engine import calibration
from sidecar.engine.batcher import ModelTimeout, Overloaded
from sidecar.engine.circuit import CircuitBreaker
from sidecar.engine.protocol import Backend, Scorer
from sidecar.engine.registry import make_scorer, model_calibration
from sidecar.events.metrics import Metrics
from sidecar.events.sink import OpenSearchSink
from sidecar.events.store import EventStore
from sidecar.proxy.upstream import UpstreamPool
from sidecar.rewrite.llm import LlmRewriter
from sidecar.rewrite.load import compile_rewriters
from sidecar.rewrite.rules import Rewriter
from sidecar.rewrite.text import scrub

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Config, the upstream pool, and each model (local behind its batcher, or remote)."""

    config: Config
    upstream: UpstreamPool
    scorers: dict[str, Scorer]
    events: EventStore
    metrics: Metrics
    rewriters: list[Rewriter | None] = field(default_factory=list)  # one per route
    base_dir: Path | None = None  # where relative rules files are found: the config file's folder
    _llms: dict[str, LlmRewriter] = field(default_factory=dict)  # by their settings, shared by routes
    _route_llms: list[LlmRewriter | None] = field(default_factory=list)  # one per route
    _swap: asyncio.Lock = field(default_factory=asyncio.Lock)
    _breakers: dict[str, tuple[Scorer, CircuitBreaker]] = field(default_factory=dict)

    def rewriter(self, route_index: int) -> tuple[Rewriter | None, LlmRewriter | None]:
        """A route's compiled rules and its LLM rewriter, if any."""
        if route_index >= len(self.rewriters):
            return None, None
        return self.rewriters[route_index], self._route_llms[route_index]

    def _set_rewriters(self, rewriters: list[Rewriter | None]) -> list[LlmRewriter]:
        """Take the routes' rewriters, reusing the LLM clients whose settings did not change;
        return the clients no route uses any more (to be closed)."""
        llms: dict[str, LlmRewriter] = {}
        per_route: list[LlmRewriter | None] = []
        for r in rewriters:
            client = None
            if r is not None and r.cfg.llm is not None:
                key = r.cfg.llm.model_dump_json()
                client = llms[key] = llms.get(key) or self._llms.get(key) or LlmRewriter(r.cfg.llm)
            per_route.append(client)
        retired = [c for k, c in self._llms.items() if k not in llms]
        self.rewriters, self._llms, self._route_llms = rewriters, llms, per_route
        return retired

    def breaker(self, model: str) -> CircuitBreaker:
        """The model's circuit breaker (a new one for a model loaded anew)."""
        scorer = self.scorers[model]
        found = self._breakers.get(model)
        if found is None or found[0] is not scorer:
            spec = self.config.models[model]
            found = (scorer, CircuitBreaker(model, spec.circuit_failures, spec.circuit_cooldown_s))
            self._breakers[model] = found
        return found[1]

    @property
    def backends(self) -> dict[str, Backend]:
        """The loaded backends by model name."""
        return {name: b.backend for name, b in self.scorers.items() if b.backend is not None}

    async def score(
        self,
        model: str,
        query: str,
        documents: Sequence[str],
        timeout_s: float,
        instruction: str | None = None,
        timing: dict[str, float] | None = None,
    ) -> list[float]:
        """Scores within ``timeout_s``: ModelTimeout past it, Overloaded when the queue cannot make it."""
        query, documents = scrub(query), [scrub(d) for d in documents]  # lone surrogates -> U+FFFD
        breaker = self.breaker(model)
        probe = breaker.before()
        try:
            scores = await self.scorers[model].score(query, documents, instruction, timeout_s, timing)
        except (ModelTimeout, Overloaded, asyncio.CancelledError):
            breaker.neutral(probe)
            raise
        except Exception:
            breaker.failure()
            raise
        breaker.success()
        if len(scores) != len(documents):
            raise ValueError(f"model {model!r} returned {len(scores)} scores for {len(documents)} documents")
        return calibration.apply(self.calibrations.get(model), scores)

    @property
    def calibrations(self) -> dict[str, calibration.Calibration | None]:
        """Each model's calibration of its raw scores into [0, 1]."""
        return {name: model_calibration(spec) for name, spec in self.config.models.items()}

    async def apply(self, new: Config) -> None:
        """Swap to a new config for the next search: models it adds or changes are loaded
        first, then config and models change together, then retired models finish their
        queued work and stop. Listeners and the upstream need a restart."""
        for key in ("listen", "upstream", "admin", "events", "tls"):
            if getattr(new, key) != getattr(self.config, key):
                raise ConfigError(f"{key}: changing it needs a restart of the sidecar")
        rewriters = await asyncio.to_thread(compile_rewriters, new, self.base_dir)
        async with self._swap:
            used = {r.model for r in new.routes}
            fresh: dict[str, Scorer] = {}
            try:
                for name in sorted(used):
                    spec = new.models[name]
                    if name in self.scorers and self.config.models.get(name) == spec:
                        continue
                    log.info("loading model %s (%s: %s)", name, spec.backend, spec.model)
                    fresh[name] = make_scorer(name, spec)
                    await fresh[name].start()
            except Exception as e:
                for b in fresh.values():
                    await b.aclose()
                raise ConfigError(f"models.{name}: cannot load: {e}") from None
            retired = [b for n, b in self.scorers.items() if n in fresh or n not in used]
            self.scorers = {n: b for n, b in self.scorers.items() if n in used and n not in fresh} | fresh
            self.config = new
            old_llms = self._set_rewriters(rewriters)
            for b in retired:
                await b.aclose()
            for c in old_llms:
                await c.aclose()

    async def aclose_rewriters(self) -> None:
        """Close the LLM rewriters' connections."""
        for c in self._llms.values():
            await c.aclose()
        self._llms, self._route_llms = {}, [None] * len(self.rewriters)


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
    config: Config, *, backends: Mapping[str, Backend] | None = None, base_dir: Path | None = None
) -> AsyncIterator[Runtime]:
    """Compile the rewrite rules, load each routed model on its own inference thread, open the
    upstream pool. ``backends`` supplies ready backends by model name in place of loading them (tests);
    ``base_dir`` is where relative rules files are looked for first.
    """
    rewriters = compile_rewriters(config, base_dir)
    async with AsyncExitStack() as stack:
        scorers: dict[str, Scorer] = {}
        runtime: Runtime | None = None

        async def stop_models() -> None:
            for b in (runtime.scorers if runtime is not None else scorers).values():
                await b.aclose()

        stack.push_async_callback(stop_models)
        used = {r.model for r in config.routes}
        for name, spec in config.models.items():
            if name not in used:
                continue
            given = (backends or {}).get(name)
            log.info("loading model %s (%s: %s)", name, spec.backend, spec.model)
            scorer = make_scorer(name, spec, (lambda b=given: b) if given is not None else None)  # type: ignore[misc]
            scorers[name] = scorer
            try:
                await scorer.start()
            except Exception as e:
                raise ConfigError(f"models.{name}: cannot load: {e}") from e
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
        ev = config.events
        sink = None
        if ev.index:
            sink = OpenSearchSink(
                ev.url or up.url,
                ev.index,
                verify=ssl_context(config) or up.verify,
                basic_auth_env=ev.basic_auth_env,
            )
            stack.callback(sink.close)
        events = EventStore(
            ev.sqlite, buffer=ev.buffer, max_events=ev.max_events, max_age_days=ev.max_age_days, sink=sink
        )
        events.open()
        stack.callback(events.close)
        runtime = Runtime(
            config,
            pool,
            scorers,
            events,
            Metrics(lambda: runtime.scorers if runtime else {}),
            base_dir=base_dir,
        )
        runtime._set_rewriters(rewriters)
        stack.push_async_callback(runtime.aclose_rewriters)
        yield runtime
