"""A fleet of sidecar processes on loopback (``rerank-sidecar serve``, one config file each),
for the fleet tests and bench/fleet.py."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

# the fleet's config signing key (config_store.key_env's default variable) in tests and benches
FLEET_KEY = "a fleet key for tests on loopback only"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fleet:
    """``n`` sidecar processes from one config (each its own ports and events file)."""

    def __init__(
        self,
        config: dict[str, Any],
        n: int,
        folder: Path,
        timeout_s: float = 120,
        threads: int | None = 1,
    ) -> None:
        """``threads``: torch's threads per process (OMP_NUM_THREADS): one, so that replicas
        sharing this machine's few cores do not spin against each other as separate machines
        would not."""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        self.admin_urls: list[str] = []
        self.logs: list[Path] = []
        try:
            for i in range(n):
                own = copy.deepcopy(config)
                port, admin = free_port(), free_port()
                own["listen"] = f"127.0.0.1:{port}"
                own["admin"] = {**own.get("admin", {}), "listen": f"127.0.0.1:{admin}"}
                path = folder / f"sidecar-{i}.yaml"
                path.write_text(yaml.safe_dump(own))
                log = folder / f"sidecar-{i}.log"
                self.logs.append(log)
                env = dict(os.environ)
                env.setdefault("RERANK_SIDECAR_CONFIG_KEY", FLEET_KEY)
                if threads is not None:
                    env["OMP_NUM_THREADS"] = str(threads)
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "sidecar.cli", "serve", "--config", str(path)],
                        stdout=log.open("wb"),
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
                self.urls.append(f"http://127.0.0.1:{port}")
                self.admin_urls.append(f"http://127.0.0.1:{admin}")
            deadline = time.monotonic() + timeout_s
            for i, admin_url in enumerate(self.admin_urls):
                while True:
                    if self.procs[i].poll() is not None:
                        raise RuntimeError(f"sidecar {i} exited: {self.logs[i].read_text()[-2000:]}")
                    try:
                        if httpx.get(f"{admin_url}/_sidecar/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sidecar {i} did not start: {self.logs[i].read_text()[-2000:]}")
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def cache_hit_rate(self) -> float | None:
        """Pairs served from a score cache over pairs looked up, over every replica (their
        Prometheus counters); None before any lookup."""
        hits = misses = 0.0
        for admin in self.admin_urls:
            for line in httpx.get(f"{admin}/_sidecar/metrics").text.splitlines():
                if line.startswith("rerank_sidecar_cache_hits_total"):
                    hits += float(line.rsplit(" ", 1)[1])
                elif line.startswith("rerank_sidecar_cache_misses_total"):
                    misses += float(line.rsplit(" ", 1)[1])
        return hits / (hits + misses) if hits + misses else None

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CacheServer:
    """valkey-server or redis-server (Debian's package) on a free loopback port, no persistence;
    ``stop`` ends it. Raises LookupError when neither is installed."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("valkey-server") or shutil.which("redis-server")
        if binary is None:
            raise LookupError("no valkey-server or redis-server (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the cache server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
