"""Run the proxy and admin listeners in one process, on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import uvicorn
from watchfiles import awatch

from sidecar import tracing
from sidecar.admin.app import AdminApp
from sidecar.config import Config, ConfigError, check_reload, is_loopback, parse_listen
from sidecar.engine.protocol import Backend
from sidecar.fleet.config_store import StoreConflict, StoreUnavailable
from sidecar.listener import LimitedHttpProtocol, raise_open_files_limit
from sidecar.proxy.app import ProxyApp
from sidecar.rewrite.load import rules_paths
from sidecar.runtime import Runtime, open_runtime
from sidecar.search.warmup import warm

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Once a sidecar has started: what it loaded (modules, models, the config: most of its
    objects) is moved out of the cyclic collector's way (``gc.freeze``), and the collector runs
    after 20,000 new objects rather than 700. A search makes a few thousand short-lived
    objects, most freed as it ends; under load the default thresholds had the collector walk
    the whole heap often enough to take a fifth of the event loop (measured with gc.callbacks,
    bench/cpu_curve.py at 32 clients)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)


def admin_token(config: Config) -> str | None:
    """The admin token from config or its env var; refuse a non-loopback admin without one."""
    token = config.admin.token
    if config.admin.token_env:
        token = os.environ.get(config.admin.token_env) or token
    host, _ = parse_listen(config.admin.listen)
    if not token and not is_loopback(host):
        raise ConfigError(
            f"admin.listen: {config.admin.listen} is not loopback; set admin.token or admin.token_env"
        )
    return token or None


def bind(listen: str, key: str = "listen", flag: str = "--listen") -> socket.socket:
    """A listening socket for ``host:port`` (port 0 picks a free one).

    The protocol is named (IPPROTO_TCP, not 0): asyncio sets TCP_NODELAY only on sockets that
    say they are TCP, and without it a response's body waited behind its headers for the
    client's delayed ACK (about 40 ms on Linux) on every search whose answer the sidecar built."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = ""
        if e.errno == errno.EADDRINUSE:
            hint = f" (another process has that port: change {key} in the config, or serve {flag} HOST:PORT)"
        raise ConfigError(f"{key}: cannot listen on {listen}: {e.strerror}{hint}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    # Signals are handled once for both listeners by SidecarServer.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class SidecarServer:
    """The proxy and admin listeners over one runtime; ``serve`` runs until ``stop``."""

    def __init__(
        self,
        config: Config,
        *,
        backends: Mapping[str, Backend] | None = None,
        config_path: Path | None = None,
        reload: Callable[[], Config] | None = None,
        watch_interval_s: float = 1.0,
        persist: bool = True,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.persist = persist
        self.reload = reload
        self.watch_interval_s = watch_interval_s
        self.token = admin_token(config)
        self.backends = backends
        limits = config.limits
        open_files = raise_open_files_limit(2 * limits.max_connections + 256)
        # both listeners' connections, the upstream pool's and the stores' files under the limit
        most = max(1, min(limits.max_connections, (open_files - 256) // 2))
        if most < limits.max_connections:
            log.warning(
                "limits.max_connections %d lowered to %d: open files limit %d",
                limits.max_connections,
                most,
                open_files,
            )
        self.protocol = LimitedHttpProtocol.under(limits, most)
        self.proxy_sock = bind(config.listen)
        self.admin_sock = bind(config.admin.listen, "admin.listen", "--admin-listen")
        self._servers: list[_Server] = []
        self._admin: AdminApp | None = None
        self.runtime: Runtime | None = None
        self.ready = asyncio.Event()

    @property
    def proxy_url(self) -> str:
        """The proxy's address as a URL."""
        return _url(self.proxy_sock, self.config.tls is not None)

    @property
    def proxy(self) -> uvicorn.Server:
        """The proxy listener's server (started by ``serve``)."""
        return self._servers[0]

    @property
    def admin_url(self) -> str:
        """The admin API's address as a URL."""
        return _url(self.admin_sock, self.config.tls is not None)

    def _uvicorn(self, app: object) -> _Server:
        tls = self.config.tls
        cfg = uvicorn.Config(
            app,  # type: ignore[arg-type]
            http=self.protocol,
            ws="none",  # no WebSocket on either listener: an upgrade is a plain request (400)
            ssl_certfile=tls.certfile if tls else None,
            ssl_keyfile=tls.keyfile if tls else None,
            ssl_ca_certs=tls.ca_certs if tls else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.ca_certs else ssl.CERT_NONE,
            lifespan="off",
            proxy_headers=False,  # the sidecar is the proxy: it appends to X-Forwarded-For
            server_header=False,
            date_header=False,
            access_log=False,
            log_config=None,
            timeout_keep_alive=self.config.limits.keep_alive_s,  # type: ignore[arg-type]
            timeout_graceful_shutdown=10,
            backlog=2048,
        )
        return _Server(cfg)

    async def serve(self, *, install_signals: bool = False) -> None:
        """Load models, open the upstream pool, serve both listeners."""
        base_dir = self.config_path.parent if self.config_path is not None else None
        tracing.setup(self.config.tracing)
        try:
            await self._serve(base_dir, install_signals)
        finally:
            if self.config.tracing is not None:
                tracing.shutdown()

    async def _serve(self, base_dir: Path | None, install_signals: bool) -> None:
        async with open_runtime(self.config, backends=self.backends, base_dir=base_dir) as rt:
            self.runtime = rt
            admin = self._admin = AdminApp(
                rt, self.token, config_path=self.config_path if self.persist else None
            )
            self._servers = [self._uvicorn(ProxyApp(rt)), self._uvicorn(admin)]
            if install_signals:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError):
                        loop.add_signal_handler(sig, self.stop)
            serving = [
                asyncio.ensure_future(self._servers[0].serve(sockets=[self.proxy_sock])),
                asyncio.ensure_future(self._servers[1].serve(sockets=[self.admin_sock])),
            ]
            while not all(s.started for s in self._servers) and not any(t.done() for t in serving):
                await asyncio.sleep(0.01)
            self.ready.set()
            watchers = [
                asyncio.ensure_future(
                    warm(compiled, rt.services.upstream, rt.warmup.setdefault(compiled.name, {}))
                )
                for compiled in rt.snapshot.routes
                if compiled.config.warmup is not None
            ]
            if self.config_path is not None and self.reload is not None:
                watchers.append(
                    asyncio.ensure_future(
                        watch_config(rt, self.config_path, self.reload, self.watch_interval_s)
                    )
                )
            if rt.services.store is not None:
                watchers.append(asyncio.ensure_future(rt.services.store.follow(lambda: rt.config, rt.apply)))
            try:
                await asyncio.gather(*serving)
            finally:
                for w in watchers:
                    w.cancel()

    def stop(self) -> None:
        """Ask both listeners to finish in-flight requests and exit; live event streams end."""
        if self._servers and not any(s.should_exit for s in self._servers):
            log.info("stopping: no new connections; the requests in flight are finished first")
        if self._admin is not None:
            self._admin.close()
        for s in self._servers:
            s.should_exit = True


async def watch_config(rt: Runtime, path: Path, reload: Callable[[], Config], interval_s: float) -> None:
    """Apply changes of the config file, or of a rules file it names, to the next search; log and
    ignore an invalid one. Their folders are watched (an editor's save-by-rename, a Kubernetes
    ConfigMap's symlink swap) and a file counts as changed when what it resolves to does: its
    inode, size or mtime. Changes within ``interval_s`` of each other are taken together."""
    path = path.absolute()

    def state(files: set[Path]) -> dict[Path, tuple[int, int, int] | None]:
        out: dict[Path, tuple[int, int, int] | None] = {}
        for f in files:
            try:
                st = f.stat()
                out[f] = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                out[f] = None
        return out

    ms = max(1, int(interval_s * 1000))
    while True:
        rules = set(rules_paths(rt.config, path.parent))
        last = state({path, *rules})
        folders = sorted({f.parent for f in last if f.parent.is_dir()})
        names = {f.name for f in last}

        def ours(_: object, changed: str, names: set[str] = names) -> bool:
            # the watched files, and a Kubernetes ConfigMap's ..data swap; not a log file beside them
            name = Path(changed).name
            return name in names or name.startswith("..")

        async for _ in awatch(*folders, watch_filter=ours, debounce=ms, step=min(50, ms), recursive=False):
            now = state(set(last))
            if now == last or now[path] is None:
                continue  # another file of the folder, or the config is away mid-swap
            rules_changed = any(now[f] != last[f] for f in rules)
            last = now
            try:
                await asyncio.to_thread(check_reload, path, rt.config)
                new = await asyncio.to_thread(reload)
                if new != rt.config or rules_changed:
                    await rt.change(new)
                    log.info("config %s reloaded", path)
            except (ConfigError, StoreConflict, StoreUnavailable) as e:
                log.error("config %s not applied, the running one stays: %s", path, e)
            if set(rules_paths(rt.config, path.parent)) != rules:
                break  # the new config names other rules files: watch those


def _url(sock: socket.socket, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
