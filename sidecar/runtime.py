"""The one typed object of shared runtime state, built and torn down with the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.config import Config, ConfigError
from sidecar.engine import calibration
from sidecar.engine.circuit import CircuitBreaker
from sidecar.engine.protocol import Backend, Scored, Scorer, ScoreRequest
from sidecar.engine.registry import make_scorer, model_calibration
from sidecar.events.metrics import Metrics
from sidecar.events.sink import OpenSearchSink, Sinks, ubi_query_document
from sidecar.events.store import EventStore
from sidecar.events.ubi import Click
from sidecar.experiments.assign import clicker
from sidecar.experiments.tracker import ReplayedClick, Tracker
from sidecar.fleet.config_store import LOCAL_KEYS, ConfigStore, StoreUnavailable
from sidecar.fleet.history import FleetHistory
from sidecar.fleet.shared_cache import SharedCache
from sidecar.rewrite.llm import LlmRewriter
from sidecar.rewrite.load import compile_rewriters
from sidecar.rewrite.rules import Rewriter
from sidecar.search.serve import Lab
from sidecar.search.snapshot import CompiledRoute, ServedModel, Snapshot
from sidecar.upstream import UpstreamPool

log = logging.getLogger(__name__)

# how long a config change waits for searches on the previous one before closing its models
DRAIN_S = 30.0


@dataclass(frozen=True)
class Services:
    """The long-lived parts of a running sidecar, made once by ``open_runtime`` with every
    field set: they outlive every config change (a config change swaps the snapshot alone)."""

    upstream: UpstreamPool
    events: EventStore
    metrics: Metrics
    tracker: Tracker  # online experiments' figures and impressions
    store: ConfigStore | None = None  # the fleet's shared config, when config_store is set
    shared_cache: SharedCache | None = None  # the fleet's score cache tier, when cache is set
    history: FleetHistory | None = None  # the events index every sidecar writes, when events.index is set


@dataclass
class Runtime:
    """The services and the serving snapshot (config, compiled routes, models).

    A request takes ``lease()`` once and uses that snapshot to its end, never the live config;
    ``apply`` builds the next one, swaps it in, and closes what the old one alone used once its
    requests are done.
    """

    services: Services
    snapshot: Snapshot
    base_dir: Path | None = None  # where relative rules files are found: the config file's folder
    _llms: dict[str, LlmRewriter] = field(default_factory=dict)  # by their settings, shared by routes
    _swap: asyncio.Lock = field(default_factory=asyncio.Lock)
    warmup: dict[str, dict[str, Any]] = field(default_factory=dict)  # each route's warm-up progress

    @property
    def config(self) -> Config:
        """The config being served."""
        return self.snapshot.config

    @property
    def scorers(self) -> dict[str, Scorer]:
        """The loaded models by name."""
        return {name: m.scorer for name, m in self.snapshot.models.items()}

    @property
    def calibrations(self) -> dict[str, calibration.Calibration | None]:
        """Each model's calibration of its raw scores into [0, 1]."""
        return {name: m.calibration for name, m in self.snapshot.models.items()}

    @property
    def backends(self) -> dict[str, Backend]:
        """The loaded backends by model name."""
        return {name: b.backend for name, b in self.scorers.items() if b.backend is not None}

    def lease(self) -> contextlib.AbstractContextManager[Snapshot]:
        """The current snapshot, held for the block."""
        return self.snapshot.held()

    async def change(self, new: Config) -> None:
        """A config change made here (admin PUT, the config file): with a config store, checked
        against the fleet's version, applied, then stored (StoreConflict, StoreUnavailable);
        without one, applied."""
        store = self.services.store
        if store is None:
            await self.apply(new)
        else:
            await store.change(self.config, new, self.apply)

    def feedback(self, found: Sequence[Click], headers: Mapping[str, str] | None = None) -> int:
        """Clicks from UBI events: counted by the experiments whose searches they name (only
        the searcher's own: identity from the click's client_id, or from ``headers``, the
        write's, for header and cookie identities), kept on disk for judgments unless an
        experiment refused them. Returns how many an experiment counted."""
        counted = 0
        tracker = self.services.tracker
        for click in found:
            result = tracker.click(click.query_id, click.object_id, clicker(click, headers or {}))
            counted += result == "counted"
            if result in ("counted", "unmatched"):
                self.services.events.add_click(click, tracker.last_identity if result == "counted" else None)
        return counted

    def health_figures(self) -> dict[str, Any]:
        """What the metrics' alerts watch: each model's circuit and refusals, the event writer,
        the config store (None without one; its error, "" when it is well) and routes' budgets."""
        events, store = self.services.events, self.services.store
        return {
            "circuits": {name: self.breaker(name).state for name in self.scorers},
            "overloaded": {name: s.stats.overloaded for name, s in self.scorers.items()},
            "events": {
                "queued": events.queued,
                "written": events.written,
                "dropped": events.dropped,
                "failing": bool(events.write_error or events.sink_error or events.writer_stopped),
            },
            "config_store": None if store is None else (store.error or ""),
            "timeouts": {r.name: r.timeout_ms / 1000 for r in self.config.routes},
        }

    def breaker(self, model: str) -> CircuitBreaker:
        """The model's circuit breaker."""
        return self.snapshot.models[model].breaker

    async def score(self, model: str, request: ScoreRequest) -> list[Scored]:
        """A model's calibrated scores of the request (see ``ServedModel.score``)."""
        return await self.snapshot.models[model].score(request)

    async def apply(self, new: Config) -> None:
        """Swap to a new config for the next search: models it adds or changes are loaded
        first, then the new snapshot is served; searches already running finish on the old
        one, and what only the old one used closes after them. Listeners and the upstream
        need a restart."""
        for key in LOCAL_KEYS:
            if getattr(new, key) != getattr(self.config, key):
                raise ConfigError(f"{key}: changing it needs a restart of the sidecar")
        rewriters = await asyncio.to_thread(compile_rewriters, new, self.base_dir)
        async with self._swap:
            current = self.scorers
            used = new.used_models()
            fresh: dict[str, Scorer] = {}
            try:
                for name in sorted(used):
                    spec = new.models[name]
                    if name in current and self.config.models.get(name) == spec:
                        continue
                    log.info("loading model %s (%s: %s)", name, spec.backend, spec.model)
                    fresh[name] = make_scorer(name, spec, shared=self.services.shared_cache)
                    await fresh[name].start()
            except Exception as e:
                for b in fresh.values():
                    await b.aclose()
                raise ConfigError(f"models.{name}: cannot load: {e}") from None
            retired = [b for n, b in current.items() if n in fresh or n not in used]
            kept = {n: b for n, b in current.items() if n in used and n not in fresh}
            old = self.snapshot
            self.snapshot, self._llms, old_llms = compiled(
                new, kept | fresh, rewriters, self.services.tracker, old, self._llms
            )
            if not await old.released(DRAIN_S):
                log.warning(
                    "searches still use the previous config after %.0f s: closing its models", DRAIN_S
                )
            for b in retired:
                await b.aclose()
            for c in old_llms:
                await c.aclose()

    async def aclose_rewriters(self) -> None:
        """Close the LLM rewriters' connections."""
        for c in self._llms.values():
            await c.aclose()
        self._llms = {}


def compiled(
    config: Config,
    scorers: Mapping[str, Scorer],
    rewriters: Sequence[Rewriter | None],
    tracker: Tracker,
    previous: Snapshot | None = None,
    previous_llms: Mapping[str, LlmRewriter] | None = None,
) -> tuple[Snapshot, dict[str, LlmRewriter], list[LlmRewriter]]:
    """A snapshot of ``config`` over these scorers (breakers kept for the scorers ``previous``
    served), its LLM clients by their settings (those whose settings did not change reused),
    and the clients no route uses any more."""
    models: dict[str, ServedModel] = {}
    for name, scorer in scorers.items():
        kept = previous.models.get(name) if previous is not None else None
        spec = config.models[name]
        breaker = (
            kept.breaker
            if kept is not None and kept.scorer is scorer
            else CircuitBreaker(name, spec.circuit_failures, spec.circuit_cooldown_s)
        )
        models[name] = ServedModel(name, scorer, breaker, model_calibration(spec), spec.reads)
    llms: dict[str, LlmRewriter] = {}
    routes = []
    tracker.configure(
        [(r.experiment.name or r.name, r.name, r.experiment) for r in config.routes if r.experiment]
    )
    for route, rewriter in zip(config.routes, rewriters, strict=True):
        client = None
        if rewriter is not None and rewriter.cfg.llm is not None:
            key = rewriter.cfg.llm.model_dump_json()
            old = (previous_llms or {}).get(key)
            client = llms[key] = llms.get(key) or old or LlmRewriter(rewriter.cfg.llm)
        exp = route.experiment
        lab = Lab(exp.name or route.name, exp, tracker, config.events.redact) if exp is not None else None
        routes.append(CompiledRoute(route.name, route, models[route.model], rewriter, client, lab, models))
    retired = [c for k, c in (previous_llms or {}).items() if k not in llms]
    return Snapshot(config, routes, models), llms, retired


def query_id_key(config: Config) -> bytes | None:
    """The key query ids are signed with (``ubi.query_id_key_env``), or None for one of the process's."""
    env = config.ubi.query_id_key_env
    if not env:
        return None
    value = os.environ.get(env, "")
    if len(value) < 16:
        raise ConfigError(f"ubi.query_id_key_env: environment variable {env} must hold 16+ characters")
    return value.encode()


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
        shared = SharedCache(config.cache) if config.cache is not None else None
        if shared is not None:
            stack.push_async_callback(shared.aclose)

        async def stop_models() -> None:
            for b in (runtime.scorers if runtime is not None else scorers).values():
                await b.aclose()

        stack.push_async_callback(stop_models)
        used = config.used_models()
        for name, spec in config.models.items():
            if name not in used:
                continue
            given = (backends or {}).get(name)
            log.info("loading model %s (%s: %s)", name, spec.backend, spec.model)
            load: Callable[[], Backend] | None = None
            if given is not None:
                load = lambda b=given: b  # noqa: E731
            scorer = make_scorer(name, spec, load, shared)
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
        found = []
        for index, document in (
            (ev.index, None),
            (config.ubi.queries_index if config.ubi.write_queries else None, ubi_query_document),
        ):
            if index:
                found.append(
                    OpenSearchSink(
                        ev.url or up.url,
                        index,
                        verify=ssl_context(config) or up.verify,
                        basic_auth_env=ev.basic_auth_env,
                        document=document,
                        hidden=document is None,  # the events index is the sidecar's own
                    )
                )
        sink = Sinks(found) if found else None
        if sink is not None:
            stack.callback(sink.close)
        events = EventStore(
            ev.sqlite,
            buffer=ev.buffer,
            max_events=ev.max_events,
            max_age_days=ev.max_age_days,
            sink=sink,
            buffer_bytes=ev.buffer_bytes,
        )
        events.open()
        stack.callback(events.close)
        tracker = Tracker(config.ubi.max_pending, query_id_key(config), config.ubi.click_window_s)
        history = None
        if ev.index:
            history = FleetHistory(
                ev.url or up.url, ev.index, ssl_context(config) or up.verify, ev.basic_auth_env
            )
            stack.push_async_callback(history.aclose)
        store = None
        if config.config_store is not None:
            store = ConfigStore(
                config.config_store,
                up.url,
                (ssl_context(config) or up.verify) if config.config_store.url is None else True,
            )
            stack.push_async_callback(store.aclose)
        metrics = Metrics(
            lambda: runtime.scorers if runtime else {},
            tracker.summaries,
            lambda: runtime.health_figures() if runtime else {},
        )
        services = Services(pool, events, metrics, tracker, store, shared, history)
        snapshot, llms, _ = compiled(config, scorers, rewriters, tracker)
        runtime = Runtime(services, snapshot, base_dir, llms)
        if store is not None:
            try:  # the fleet's version before the first search; the follower retries if it fails
                await store.sync(config, runtime.apply)
            except StoreUnavailable as e:
                store.failed(str(e))
        if tracker.experiments:  # figures survive a restart when searches and clicks are stored
            since = time.time() - ev.max_age_days * 86400
            searches, stored = events.experiment_history(since)
            taken = tracker.replay(searches, [ReplayedClick(q, o, t, i) for q, o, t, i in stored])
            if taken:
                log.info("experiments: %d stored searches and their clicks taken back", taken)
        stack.push_async_callback(runtime.aclose_rewriters)
        yield runtime
