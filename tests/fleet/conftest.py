"""A real redis-server (Debian's package; valkey-server where installed) on loopback."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.fleet import FLEET_KEY, CacheServer

# the sidecars of these tests (in this process and in the fleet's) sign the config store with it
os.environ.setdefault("RERANK_SIDECAR_CONFIG_KEY", FLEET_KEY)


@pytest.fixture
def cache_server(tmp_path: Path) -> Iterator[CacheServer]:
    try:
        server = CacheServer(tmp_path)
    except LookupError as e:
        pytest.skip(f"{e}; .ci/run installs it")
    yield server
    server.stop()


def poll_until(check: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(step)
