"""The search event: one record per intercepted search, the admin API's data contract.

The core builds it (sidecar/search/record.py), the store keeps it (``to_json``), the admin
API serves it, the preview and the TUI read it back (``SearchEvent.model_validate``).
``version`` says which shape a record has: 1 (before route names, with ``route`` a
position), 2 (``route`` a name, ``upstream_status``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sidecar.vocab import Reason, Status

VERSION = 2


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# The window's rows are plain dataclasses: two hundred a search are made on the event loop, and
# a pydantic model costs ten times as much to build (pydantic validates them in a SearchEvent
# read back, and writes them in its dumps, all the same).
@dataclass(slots=True)
class BaselineHit:
    """A hit of the window in the cluster's order."""

    rank: int
    id: Any = None
    score: float | None = None  # the cluster's
    title: str = ""
    model_score: float | None = None  # the model's calibrated score, when it ran (cut hits too)
    no_text: bool | None = None  # True: no text in the route's fields, not scored (flag missing-text)


@dataclass(slots=True)
class RankedHit:
    """A hit of the reranked window after cuts."""

    score: float  # the _score the client saw
    rank: int
    original_rank: int
    id: Any = None
    model_score: float | None = None
    fused: float | None = None  # the fused score that ordered it (fusion other than replace)
    query_scores: list[float] | None = None  # against the original query and each variant


def _row(row: BaselineHit | RankedHit, keys: tuple[str, ...]) -> dict[str, Any]:
    """A row as JSON, without the keys that do not apply to it (None)."""
    out = {}
    for k in keys:
        v = getattr(row, k)
        if v is not None:
            out[k] = v
    return out


_BASELINE = ("id", "score", "rank", "title", "model_score", "no_text")
_RANKED = ("id", "score", "model_score", "rank", "original_rank", "fused", "query_scores")


class VariantRecord(_Record):
    """A query variant and the rules that made it."""

    text: str
    rules: list[str] = Field(default_factory=list)


class Page(_Record):
    """The client's page."""

    from_: int = Field(0, alias="from")
    size: int = 10


class Timings(_Record):
    """Milliseconds per stage; absent where the stage did not run."""

    rewrite_ms: float | None = None
    upstream_ms: float | None = None
    queue_ms: float | None = None
    model_ms: float | None = None
    rerank_ms: float | None = None
    total_ms: float | None = None


class ExperimentRecord(_Record):
    """What an online experiment did with the search."""

    name: str
    mode: str  # shadow, ab, interleave
    served: str  # control, treatment, interleaved
    identified: bool  # False: no identity, the default arm, counted apart
    credit: list[str] | None = None  # interleaved: the arm that placed each hit of the page
    stopped: bool = False  # the guardrail had stopped it: control served
    settings: str = ""  # a hash of the experiment's settings (a restart replays matching searches)
    identity: str | None = None  # a hash of who searched: only their clicks count


class SearchEvent(_Record):
    """One intercepted search."""

    version: int = VERSION
    id: str
    time: float
    index: str
    route: str | int | None = None  # the route's name (a position in version 1 records)
    query: str | None = None
    language: str | None = None  # the query's (or its window's) language, where the model reads only some
    variants: list[VariantRecord] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    retrieval: str = "original"
    window: int | None = None
    page: Page | None = None
    baseline: list[BaselineHit] = Field(default_factory=list)
    final: list[RankedHit] = Field(default_factory=list)
    cut: int = 0
    timings: Timings = Field(default_factory=Timings)
    model: str | None = None
    status: Status = Status.BYPASS
    reason: Reason | str = Reason.NONE  # a Reason; an _msearch summary may join several
    upstream_status: int | None = None  # with reason upstream-status: the cluster's status
    flags: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)  # the request's X-Rerank* headers, no other
    # User Behavior Insights: the search's query_id (the client's, or one the sidecar gave it)
    # and the ids of the page the client got, which clicks are matched against
    query_id: str | None = None
    client_id: str | None = None  # the search's ext.ubi.client_id (for ubi_queries records)
    served: list[Any] | None = None
    experiment: ExperimentRecord | None = None

    @property
    def scored(self) -> bool:
        """Whether the model scored the whole window (what threshold previews need)."""
        return (
            self.status is Status.APPLIED
            and bool(self.baseline)
            and all(b.model_score is not None for b in self.baseline)
        )

    def cap(self, chars: int) -> None:
        """Keep at most ``chars`` of the query, of each variant, title and header value (a
        megabyte query costs an event no more than ``chars``)."""
        if self.query is not None and len(self.query) > chars:
            self.query = self.query[:chars]
        for v in self.variants:
            if len(v.text) > chars:
                v.text = v.text[:chars]
        for hit in self.baseline:
            if len(hit.title) > chars:
                hit.title = hit.title[:chars]
        self.headers = {k[:200]: v[:chars] for k, v in list(self.headers.items())[:50]}
        if self.client_id is not None:
            self.client_id = self.client_id[:200]

    def redact(self) -> None:
        """Keep no query or document text (``events.redact``): no query, variants' text, rules
        (a rule names the words it matched), titles or header values; ids, scores, ranks,
        timings and outcomes stay, so stats, metrics and threshold previews still work."""
        self.query = None
        self.variants = [VariantRecord(text="", rules=[]) for _ in self.variants]
        self.rules = []
        for hit in self.baseline:
            hit.title = ""
        self.headers = {k: "" for k in self.headers}
        self.client_id = None

    def to_json(self) -> dict[str, Any]:
        """The record as the store, the admin API and the live feed give it: rows and timings
        without the keys that do not apply to them."""
        out = self.model_dump(mode="json", by_alias=True, exclude={"baseline", "final", "timings"})
        out["baseline"] = [_row(b, _BASELINE) for b in self.baseline]
        out["final"] = [_row(f, _RANKED) for f in self.final]
        out["timings"] = self.timings.model_dump(mode="json", exclude_none=True)
        for key in ("upstream_status", "query_id", "client_id", "served", "experiment"):
            if out[key] is None:
                del out[key]
        return out
