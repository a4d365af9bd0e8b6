"""A circuit breaker per model: after repeated errors the model is skipped for a cooldown
(searches answer in the cluster's order at once), then one search probes it."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class CircuitOpen(Exception):
    """The model failed repeatedly and is skipped until its cooldown ends."""


class CircuitBreaker:
    """Closed: calls go through, consecutive errors are counted. Open after ``failures`` of them:
    calls fail at once for ``cooldown_s``. Then half-open: one call probes; its success closes
    the circuit, its error opens it again. A serving engine's timeouts count as errors (a hanging
    one would make every search wait out its budget); overload, and a local model's timeout
    (its queue under load), say nothing about its health. ``failures: 0`` never opens."""

    def __init__(self, name: str, failures: int, cooldown_s: float) -> None:
        self.name = name
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.opens = 0
        self._probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.cooldown_s else "open"

    def before(self) -> bool:
        """Let a call through (True when it is the probe), or raise CircuitOpen."""
        state = self.state
        if state == "closed":
            return False
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        raise CircuitOpen(f"model {self.name!r}: circuit open after {self.failures} errors")

    def success(self) -> None:
        if self.opened_at is not None:
            log.info("model %s: the probe succeeded, circuit closed", self.name)
        self.failures, self.opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        if self._probing or (self.threshold and self.opened_at is None and self.failures >= self.threshold):
            self.opened_at = time.monotonic()
            self.opens += 1
            log.warning(
                "model %s: circuit open for %.0f s after %d errors", self.name, self.cooldown_s, self.failures
            )
        self._probing = False

    def neutral(self, probe: bool) -> None:
        """A call that ended without telling (timeout, overload, cancelled): a probe may run again."""
        if probe:
            self._probing = False

    def info(self) -> dict[str, Any]:
        return {"state": self.state, "failures": self.failures, "opens": self.opens}
