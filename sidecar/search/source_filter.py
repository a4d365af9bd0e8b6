"""OpenSearch ``_source`` filtering: parse the client's spec, widen it, apply it locally."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SourceFilter:
    """What the client asked of ``_source``: off, everything, or includes/excludes."""

    enabled: bool = True
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    @property
    def is_identity(self) -> bool:
        """True when the full source comes back unchanged."""
        return self.enabled and not self.includes and not self.excludes


def _as_patterns(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def parse_body_source(value: Any) -> SourceFilter | None:
    """The body's ``_source`` value; None when it is not a shape OpenSearch accepts."""
    if value is None:
        return SourceFilter()
    if isinstance(value, bool):
        return SourceFilter(enabled=value)
    patterns = _as_patterns(value)
    if patterns is not None:
        return SourceFilter(includes=patterns)
    if isinstance(value, dict):
        inc = value.get("includes", value.get("include", []))
        exc = value.get("excludes", value.get("exclude", []))
        inc_p, exc_p = _as_patterns(inc), _as_patterns(exc)
        if inc_p is None or exc_p is None or set(value) - {"includes", "include", "excludes", "exclude"}:
            return None
        return SourceFilter(includes=inc_p, excludes=exc_p)
    return None


def parse_params_source(params: dict[str, str], body_filter: SourceFilter) -> SourceFilter:
    """URL parameters ``_source``, ``_source_includes``, ``_source_excludes`` override the body."""
    result = body_filter
    raw = params.get("_source")
    if raw is not None:
        low = raw.strip().lower()
        if low in ("false", "0", "off", "no"):
            result = SourceFilter(enabled=False)
        elif low in ("true", "1", "on", "yes", ""):
            result = SourceFilter()
        else:
            result = SourceFilter(includes=_as_patterns(raw) or ())
    inc = params.get("_source_includes", params.get("_source_include"))
    exc = params.get("_source_excludes", params.get("_source_exclude"))
    if inc is not None or exc is not None:
        result = SourceFilter(
            includes=_as_patterns(inc) or (() if raw is None else result.includes),
            excludes=_as_patterns(exc) or (),
        )
    return result


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    """A path matches a pattern itself, or lies under a path that does."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern):
            return True
        parts = path.split(".")
        for i in range(1, len(parts)):
            if fnmatch.fnmatchcase(".".join(parts[:i]), pattern):
                return True
    return False


def _could_lead(prefix: str, patterns: tuple[str, ...]) -> bool:
    """Whether a pattern may match something below the object at ``prefix``."""
    for pattern in patterns:
        head = pattern.split(".")[: prefix.count(".") + 1]
        if fnmatch.fnmatchcase(prefix, ".".join(head)) or "*" in pattern.split(".")[0]:
            return True
    return False


def _filter(node: Any, prefix: str, f: SourceFilter) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            if f.excludes and _matches(path, f.excludes):
                continue
            container = isinstance(value, dict) or (
                isinstance(value, list) and any(isinstance(v, dict) for v in value)
            )
            if container and not (f.includes and _matches(path, f.includes)):
                if f.includes and not _could_lead(path, f.includes):
                    continue
                sub = _filter(value, path, f)
                if sub or (isinstance(value, dict) and not f.includes):
                    out[key] = sub
                continue
            if f.includes and not _matches(path, f.includes):
                continue
            out[key] = _filter(value, path, SourceFilter(excludes=f.excludes)) if f.excludes else value
        return out
    if isinstance(node, list):
        items = [_filter(v, prefix, f) if isinstance(v, (dict, list)) else v for v in node]
        return [v for v in items if v != {} or not f.includes]
    return node


def apply_filter(source: dict[str, Any], f: SourceFilter) -> dict[str, Any]:
    """The source as OpenSearch would have returned it under the client's filter."""
    if f.is_identity:
        return source
    result = _filter(source, "", f)
    return result if isinstance(result, dict) else {}


_FIELD_SAFE = re.compile(r"^[\w.@-]+$")


def widened(f: SourceFilter, fields: tuple[str, ...]) -> SourceFilter:
    """A filter that fetches what the client asked for plus the route's text fields."""
    if f.is_identity:
        return f
    wanted = tuple(x for x in fields if _FIELD_SAFE.match(x))
    if not f.enabled:
        return SourceFilter(includes=wanted)
    includes = (*f.includes, *[x for x in wanted if x not in f.includes]) if f.includes else ()
    excludes = tuple(e for e in f.excludes if not any(_matches(x, (e,)) for x in wanted))
    return SourceFilter(includes=includes, excludes=excludes)


def to_body(f: SourceFilter) -> Any:
    """The ``_source`` value that asks OpenSearch for this filter."""
    if not f.enabled:
        return False
    if f.is_identity:
        return True
    spec: dict[str, Any] = {}
    if f.includes:
        spec["includes"] = list(f.includes)
    if f.excludes:
        spec["excludes"] = list(f.excludes)
    return spec
