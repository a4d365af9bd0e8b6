"""Logging as every command sets it up: one line a record, third-party chatter quieted.

``log_format: text`` (the default) is for people; ``json`` writes one object a line for a log
pipeline, with the trace and span ids of the request it was written in (when tracing is on) and,
for a line about a search, its route, event id and reason."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol

from sidecar import tracing


class Search(Protocol):
    """What a log line names of the search it was written for (a SearchEvent)."""

    id: str
    route: str | int | None
    reason: Any


# the search whose task writes the line (set by the proxy for each search it serves)
current_search: ContextVar[Search | None] = ContextVar("current_search", default=None)

# what every LogRecord has: the rest of its attributes are a call's ``extra``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time (UTC, ISO 8601), level, logger, message, the trace,
    the search it is about, the ``extra`` it was given and the exception's traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = tracing.ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        search = current_search.get()
        if search is not None:
            out["route"] = search.route
            out["event"] = search.id
            if search.reason:
                out["reason"] = str(getattr(search.reason, "value", search.reason))
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log lines with time and level (or JSON objects); quiet third-party loggers and progress bars."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for noisy in ("httpx", "httpcore", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    except ImportError:  # pragma: no cover
        pass
