"""Messages between the network workers, the app and its screens (named for what happened)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from sidecar.events.event import SearchEvent

# Textual sets attributes on messages as it routes them, so these dataclasses cannot be frozen.


@dataclass
class EventReceived(Message):
    """A sidecar recorded a search."""

    source: str
    event: SearchEvent


@dataclass
class StatsUpdated(Message):
    """A sidecar's figures of the last minute arrived."""

    source: str
    stats: dict[str, Any]


@dataclass
class ConnectionChanged(Message):
    """A sidecar became reachable or stopped being so."""

    source: str
    connected: bool
    detail: str = ""
