"""The shared vocabulary: what happened to a search (``Status``), why (``Reason``), and the
header type of the ASGI and upstream layers. A leaf: every layer may use it, it imports none."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

# headers as ASGI and the upstream pool carry them: (name, value) byte pairs, names lower-case
RawHeaders = Sequence[tuple[bytes, bytes]]


class Status(str, Enum):
    """What happened to the search."""

    APPLIED = "applied"  # reranked
    FALLBACK = "fallback"  # the cluster's order: the model could not answer in time
    BYPASS = "bypass"  # passed through unchanged


class Reason(str, Enum):
    """Why a search was bypassed or fell back; ``NONE`` for a reranked one."""

    NONE = ""
    # bypass: the request goes to the cluster unchanged
    NO_ROUTE = "no-route"
    SIZE_0 = "size-0"
    SORT = "sort"
    SCROLL = "scroll"
    SEARCH_AFTER = "search_after"
    PIT = "pit"
    RESCORE = "rescore"
    DISABLED_BY_HEADER = "disabled-by-header"
    NO_QUERY_TEXT = "no-query-text"
    KNN_NO_TEXT = "knn-no-text"  # a vector search with no text to rerank against
    STORED_FIELDS = "stored_fields"
    FILTER_PATH = "filter_path"
    FORMAT = "format"  # the client asked for YAML, CBOR or Smile (?format=, Accept)
    BODY_TOO_LARGE = "body-too-large"
    CONTENT_TYPE = "content-type"
    CONTENT_ENCODING = "content-encoding"
    UNPARSED_BODY = "unparsed-body"
    UNPARSED_HEADER = "unparsed-header"  # an _msearch header line that is not an object
    UNPARSED_PAGING = "unparsed-paging"
    UNPARSED_SOURCE = "unparsed-source"
    QUERY_TOO_LONG = "query-too-long"  # past limits.max_query_chars: no model reads that far
    MSEARCH_CAP = "msearch-cap"  # past limits.max_reranked_subsearches of one _msearch
    # the query is in a language the route's model does not read (a bypass), or, for a query
    # with no letters, its window is (a fallback): see sidecar/search/languages.py
    LANGUAGE = "language"
    # bypass after the widened request: the cluster's own answer goes back
    UPSTREAM_UNAVAILABLE = "upstream-unavailable"  # no answer: 502/504 in OpenSearch's shape
    UPSTREAM_STATUS = "upstream-status"  # not a 200 search answer (header: upstream-status-NNN)
    UPSTREAM_ERROR = "upstream-error"  # an _msearch sub-search the cluster answered with an error
    # fallback: the client's page in the cluster's order
    WIDEN_REFUSED = (
        "widen-refused"  # the cluster refused the widened request (a 400 or 413), not the client's
    )
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"
    CIRCUIT_OPEN = "circuit-open"
    MODEL_ERROR = "model-error"
    SIDECAR_ERROR = "sidecar-error"  # a fault of the sidecar's own after the cluster answered
    # a later page of a search whose page fell back: the cluster's order goes on (search/paging.py)
    PAGED_FALLBACK = "paged-fallback"

    def header(self, upstream_status: int | None = None) -> str:
        """The ``X-Rerank-Reason`` value."""
        if self is Reason.UPSTREAM_STATUS and upstream_status is not None:
            return f"{self.value}-{upstream_status}"
        return self.value


def reason_text(reason: Reason | str, upstream_status: int | None = None) -> str:
    """A reason as the ``X-Rerank-Reason`` header gives it (a version-1 record's string as it is)."""
    return reason.header(upstream_status) if isinstance(reason, Reason) else reason


FALLBACK_REASONS = frozenset(
    {
        Reason.WIDEN_REFUSED,
        Reason.TIMEOUT,
        Reason.OVERLOADED,
        Reason.CIRCUIT_OPEN,
        Reason.MODEL_ERROR,
        Reason.SIDECAR_ERROR,
        Reason.LANGUAGE,
        Reason.PAGED_FALLBACK,
    }
)
