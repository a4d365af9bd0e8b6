"""What happened to one (sub-)search: the result that the event, the headers and the metrics
are made from."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.vocab import Reason, Status


@dataclass(frozen=True)
class Outcome:
    """What happened to one (sub-)search."""

    status: Status
    reason: Reason = Reason.NONE
    model: str = ""
    took_ms: float = 0.0
    cut: int = 0
    flags: tuple[str, ...] = ()
    variants: int = 0
    upstream_status: int | None = None

    @classmethod
    def bypass(cls, reason: Reason, upstream_status: int | None = None) -> Outcome:
        """A search passed through unchanged."""
        return cls(Status.BYPASS, reason, upstream_status=upstream_status)

    @classmethod
    def fallback(cls, reason: Reason) -> Outcome:
        """A search answered in the cluster's order."""
        return cls(Status.FALLBACK, reason)

    @property
    def reason_text(self) -> str:
        """The reason as the ``X-Rerank-Reason`` header gives it."""
        return self.reason.header(self.upstream_status)


def summarize(outcomes: list[Outcome]) -> Outcome:
    """An ``_msearch``'s headers: the first reranked sub-search (or fallback) speaks for it,
    with the variants of all of its sub-searches added up."""
    variants = sum(o.variants for o in outcomes)
    for status in (Status.APPLIED, Status.FALLBACK):
        hits = [o for o in outcomes if o.status is status]
        if hits:
            return Outcome(
                status, hits[0].reason, hits[0].model, max(o.took_ms for o in hits), variants=variants
            )
    return Outcome(Status.BYPASS, outcomes[0].reason if outcomes else Reason.NONE)
