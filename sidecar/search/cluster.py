"""The cluster as the core sees it: the ``Upstream`` that an adapter gives it (one ``_search``,
or one line of an ``_msearch``; a fake one in the core's unit tests) and the ``Answer``s it gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.search.outcome import Outcome
from sidecar.search.page import window_hits
from sidecar.search.plan import SearchPlan
from sidecar.vocab import Reason

# what a cluster answers a request it will not take (too large a result window, a field it cannot
# return, too large a body): the widened request is asked again as the client sent it
WIDEN_REFUSED = frozenset({400, 413})


@dataclass(frozen=True)
class Answer:
    """The cluster's answer to one search: a whole ``_search`` answer, or one item of an
    ``_msearch`` (``item``). ``doc`` is its JSON (None: not a JSON 200); ``wire`` is the
    adapter's own copy of it, sent back as it came when it is not reranked."""

    status: int
    doc: Any = None
    item: bool = False
    wire: Any = None
    took_ms: float | None = None  # the cluster's time for it (None: asked with others)

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300

    @property
    def window(self) -> list[dict[str, Any]] | None:
        """Its hits, when it is a search answer the core can rerank (None otherwise)."""
        return window_hits(self.doc) if self.doc is not None and self.status == 200 else None

    def passed(self) -> Outcome:
        """The outcome of passing it back as it came: an item's error, or the answer's status."""
        if self.item:
            return Outcome.bypass(Reason.UPSTREAM_ERROR)
        return Outcome.bypass(Reason.UPSTREAM_STATUS, self.status)


class ClusterRefused(Exception):
    """The cluster refused the page past the window (``from: 9995`` past its result window):
    the client gets the cluster's own error, as it would going direct."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"the cluster answered {answer.status}")
        self.answer = answer


class Upstream(Protocol):
    """The cluster, as the adapter that serves a search reaches it."""

    async def search(self, plan: SearchPlan) -> Answer | None:
        """The widened search; None when the cluster gave no answer (the client was told)."""
        ...

    async def as_sent(self) -> Answer | None:
        """The search as the client sent it (when the cluster refused the widened one)."""
        ...

    async def hits(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The cluster's hits for a widened body (the page past the window); None when it would
        not give them; ClusterRefused when it answered with an error of the client's."""
        ...
