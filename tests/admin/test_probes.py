"""Kubernetes' probes: /_sidecar/live and /_sidecar/ready answer without the admin token (and
say nothing else), readiness follows the cluster, and every other admin path still needs it."""

from __future__ import annotations

import socket

import httpx
from osmem_server import OsmemServer

from sidecar.config import parse_config
from tests.conftest import RunningSidecar

TOKEN = "probe-test-token-0123456789"


def _sidecar(upstream: str) -> RunningSidecar:
    return RunningSidecar(
        parse_config(
            {
                "listen": "127.0.0.1:0",
                "upstream": {"url": upstream, "connect_timeout_s": 0.5},
                "admin": {"listen": "127.0.0.1:0", "token": TOKEN},
            }
        )
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_probes_answer_without_the_token_and_readiness_follows_the_cluster(osmem: OsmemServer) -> None:
    up = _sidecar(osmem.url)
    down = _sidecar(f"http://127.0.0.1:{_closed_port()}")
    try:
        for running in (up, down):
            live = httpx.get(f"{running.admin_url}/_sidecar/live")
            assert live.status_code == 200 and live.json() == {"live": True}
        ready = httpx.get(f"{up.admin_url}/_sidecar/ready")
        assert ready.status_code == 200 and ready.json() == {"ready": True}
        not_ready = httpx.get(f"{down.admin_url}/_sidecar/ready")
        assert not_ready.status_code == 503
        error = not_ready.json()["error"]
        assert error["type"] == "not_ready" and "the cluster does not answer" in error["reason"]
        # the rest of the admin API still needs the token (and a probe path's look-alikes too)
        for path in ("/_sidecar/health", "/_sidecar/metrics", "/_sidecar/ready/", "/_sidecar/live/x"):
            assert httpx.get(f"{up.admin_url}{path}").status_code == 401, path
        headers = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{up.admin_url}/_sidecar/health", headers=headers).status_code == 200
    finally:
        up.close()
        down.close()
