"""Match the index expression of a request against the configured routes."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from urllib.parse import unquote

from sidecar.config import RouteConfig

ALL_INDICES = "_all"


def split_indices(expression: str | Sequence[str] | None) -> list[str]:
    """The index names or patterns of a URL segment (``a,b*``) or an msearch header value."""
    if expression is None:
        return [ALL_INDICES]
    parts = expression if not isinstance(expression, str) else unquote(expression).split(",")
    names = [p.strip() for p in parts if isinstance(p, str) and p.strip()]
    return names or [ALL_INDICES]


def match_route(routes: Sequence[RouteConfig], indices: Sequence[str]) -> int | None:
    """The first route whose patterns cover every index named, or None.

    ``/_search`` names no index: it is ``_all``, which only a route for ``*`` or
    ``_all`` covers.
    """
    for i, route in enumerate(routes):
        if all(any(fnmatch.fnmatchcase(name, pat) for pat in route.indices) for name in indices):
            return i
    return None
