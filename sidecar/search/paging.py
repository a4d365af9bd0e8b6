"""Pages of one search never mix two orders: a search the model could not score in time (it
timed out, was full, failing or its circuit open) is answered in the cluster's order, and a
later page of the same search (the same route, index, widened query and variants) continues in
that order for a while instead of reranking, as the model may well be ready by then. A first
page that is reranked again forgets it."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict

from sidecar.search.plan import SearchPlan
from sidecar.vocab import Reason

# what a fallback is remembered for: a model that could not answer (not a query it cannot read)
REMEMBERED = frozenset({Reason.TIMEOUT, Reason.OVERLOADED, Reason.CIRCUIT_OPEN, Reason.MODEL_ERROR})


class FallbackMemory:
    """Searches answered in the cluster's order, for ``ttl_s`` seconds, at most ``size`` of them."""

    def __init__(self, ttl_s: float = 300.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._until: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    @staticmethod
    def key(index: str | None, plan: SearchPlan) -> bytes:
        """One search, whatever its page: the widened body asks for the whole window each time."""
        text = json.dumps(
            [index, plan.route, plan.body, plan.params, plan.queries, plan.model],
            sort_keys=True,
            default=str,
            ensure_ascii=False,
        )
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def remember(self, key: bytes) -> None:
        with self._lock:
            self._until[key] = time.monotonic() + self.ttl_s
            self._until.move_to_end(key)
            while len(self._until) > self.size:
                self._until.popitem(last=False)

    def recalls(self, key: bytes) -> bool:
        """Whether the search fell back within ``ttl_s``."""
        with self._lock:
            until = self._until.get(key)
            if until is None:
                return False
            if until < time.monotonic():
                del self._until[key]
                return False
            return True

    def forget(self, key: bytes) -> None:
        with self._lock:
            self._until.pop(key, None)
