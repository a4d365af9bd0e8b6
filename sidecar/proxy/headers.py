"""The ``X-Rerank*`` headers of an answer, derived from its outcome and its event."""

from __future__ import annotations

from sidecar.events.event import SearchEvent
from sidecar.search.outcome import Outcome
from sidecar.vocab import Status


def bypass_headers(reason: str) -> list[tuple[bytes, bytes]]:
    """The headers of a bypassed answer."""
    return [(b"x-rerank", b"bypass"), (b"x-rerank-reason", reason.encode())]


def outcome_headers(outcome: Outcome) -> list[tuple[bytes, bytes]]:
    """The ``X-Rerank*`` headers of an answer."""
    headers = [(b"x-rerank", outcome.status.value.encode())]
    if outcome.reason_text:
        headers.append((b"x-rerank-reason", outcome.reason_text.encode()))
    if outcome.model:
        headers.append((b"x-rerank-model", outcome.model.encode()))
    if outcome.status is not Status.BYPASS:
        headers.append((b"x-rerank-took-ms", f"{outcome.took_ms:.1f}".encode()))
        headers.append((b"x-rerank-variants", str(outcome.variants).encode()))
    if outcome.status is Status.APPLIED:
        headers.append((b"x-rerank-cut", str(outcome.cut).encode()))
        if outcome.flags:
            headers.append((b"x-rerank-flags", ",".join(outcome.flags).encode()))
    return headers


def experiment_headers(event: SearchEvent) -> list[tuple[bytes, bytes]]:
    """``X-Rerank-Experiment: NAME`` for a search an experiment served (not its arm: the event
    says which, the client is not told)."""
    e = event.experiment
    if e is None:
        return []
    return [(b"x-rerank-experiment", e.name.encode())]
