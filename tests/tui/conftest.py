"""A sidecar with a config file and a token, for the TUI to watch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from osmem_server import OsmemServer
from textual.pilot import Pilot

from sidecar.config import load_config
from tests.conftest import RunningSidecar

TOKEN = "tui-test-token"


def tui_config(osmem: OsmemServer, admin: str = "127.0.0.1:0") -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",
        "upstream": {"url": osmem.url},
        "admin": {"listen": admin, "token": TOKEN},
        "models": {"minilm": {"backend": "bi-encoder", "model": "all-MiniLM-L6-v2", "device": "cpu"}},
        "routes": [{"indices": ["kb"], "model": "minilm", "window": 16, "fields": ["title", "text"]}],
    }


def start(osmem: OsmemServer, folder: Path, admin: str = "127.0.0.1:0") -> tuple[RunningSidecar, Path]:
    path = folder / "sidecar.yaml"
    path.write_text(yaml.safe_dump(tui_config(osmem, admin)))
    return RunningSidecar(load_config(path), config_path=path), path


@pytest.fixture
def watched(osmem: OsmemServer, tmp_path: Path) -> Iterator[tuple[RunningSidecar, Path]]:
    running, path = start(osmem, tmp_path)
    yield running, path
    running.close()


async def until(pilot: Pilot[Any], check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until ``check`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await pilot.pause(0.05)
        await asyncio.sleep(0.05)
