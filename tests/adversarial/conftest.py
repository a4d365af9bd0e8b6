"""The red team's tests: everything that reaches the proxy port is an attacker's. Each test drives
a real sidecar in front of osmem-server on loopback, bounded in count and time."""

from __future__ import annotations

import os
import socket

from testkit.fleet import FLEET_KEY
from tests.fleet.conftest import poll_until as poll

__all__ = ["host_port", "poll", "raw"]

# the sidecars of these tests sign their config store with it
os.environ.setdefault("RERANK_SIDECAR_CONFIG_KEY", FLEET_KEY)


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def raw(url: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are on one connection; the answer until the server closes it."""
    with socket.create_connection(host_port(url), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)
