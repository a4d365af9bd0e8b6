"""A real redis-server (Debian's package; valkey-server where installed) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.fleet import CacheServer


@pytest.fixture
def cache_server(tmp_path: Path) -> Iterator[CacheServer]:
    try:
        server = CacheServer(tmp_path)
    except LookupError as e:
        pytest.skip(f"{e}; .ci/run installs it")
    yield server
    server.stop()
