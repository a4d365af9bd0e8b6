"""OpenTelemetry traces, off unless ``tracing:`` is configured (set once at start).

A search is a SERVER span under the client's W3C ``traceparent`` (when it sent one), with a
child for each stage: ``plan``, ``rewrite``, each call to the cluster (a CLIENT span whose
context goes on in the ``traceparent`` the cluster gets), ``score`` with its ``queue`` and
``model`` spans (the inference thread's own times, recorded as they were measured), ``fusion``
``page`` and ``response``. A remote model engine's request is a CLIENT span too, and passes
the trace on. A request is traced when its ``traceparent`` says sampled, or, without one, by
``sample_ratio``; one that is not costs a look at its headers, and its ``traceparent`` goes on
to the cluster as it came.

When tracing is off every helper here is a check of one module global and a shared no-op
context: nothing is imported from OpenTelemetry, nothing is allocated per request.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from sidecar.config import TracingConfig

log = logging.getLogger(__name__)

_tracer: Tracer | None = None
_provider: Any = None
_ratio = 0.0  # sample_ratio: the share of requests without a traceparent that are traced
_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()
# the propagation headers the sidecar replaces with its own span's when it traces a request
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


def setup(config: TracingConfig | None) -> None:
    """Start exporting spans (OTLP over HTTP, batched in the background) as ``config`` says;
    None: tracing stays off."""
    global _tracer, _provider, _ratio
    if config is None:
        return
    shutdown()  # one provider a process: a second sidecar in it (tests) takes over
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    endpoint = config.endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        # the root's share is decided before any span is made (``sampled``): a request that is
        # not traced costs a look at its headers and nothing of OpenTelemetry
        sampler=ParentBased(ALWAYS_ON),
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=10), schedule_delay_millis=1000)
    )
    _provider = provider
    _tracer = provider.get_tracer("rerank-sidecar")
    _ratio = config.sample_ratio
    log.info("tracing: spans go to %s (%s of new traces sampled)", endpoint, config.sample_ratio)


def shutdown() -> None:
    """Send what is left and stop (at exit)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def on() -> bool:
    """Whether tracing is configured."""
    return _tracer is not None


def sampled(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request is traced: as its W3C ``traceparent`` says (the sampled flag), or, when
    it has none (or one that cannot be read), by ``sample_ratio``."""
    for k, v in headers:
        if k.lower() == b"traceparent":
            parts = v.strip().split(b"-")
            if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16 and len(parts[3]) == 2:
                try:
                    return bool(int(parts[3], 16) & 1)
                except ValueError:
                    break
            break
    return _ratio >= 1.0 or (_ratio > 0.0 and random.random() < _ratio)


def _carrier(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers if k.lower() in _TRACE_HEADERS
    }


def server(name: str, headers: Iterable[tuple[bytes, bytes]], attributes: Mapping[str, Any]) -> Any:
    """The span of one request the proxy serves (one that ``sampled`` picked), under the
    client's ``traceparent``, made the current one for what it awaits (a no-op context when
    tracing is off)."""
    if _tracer is None:
        return _NOTHING
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    return _tracer.start_as_current_span(
        name,
        context=extract(_carrier(headers)),
        kind=SpanKind.SERVER,
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=False,
    )


def _current() -> Span | None:
    """The current span when it is recorded, else None."""
    if _tracer is None:
        return None
    from opentelemetry.trace import get_current_span

    span = get_current_span()
    return span if span.is_recording() else None


def span(name: str, attributes: Mapping[str, Any] | None = None, client: bool = False) -> Any:
    """A child of the current span, made current for what runs inside; a no-op context when
    tracing is off or the trace is not sampled."""
    if _tracer is None or _current() is None:
        return _NOTHING
    return _child(_tracer, name, attributes, client)


def _child(tracer: Tracer, name: str, attributes: Mapping[str, Any] | None, client: bool) -> Any:
    from opentelemetry.trace import SpanKind

    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    return tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes or {}))


def cluster_call(scope: Mapping[str, Any]) -> Any:
    """The span of a request passed through to the cluster (its method and path), under the
    current one; the shared no-op context when nothing is traced (no name or dict is made)."""
    if _tracer is None or _current() is None:
        return _NOTHING
    return _child(_tracer, f"cluster {scope['method']}", {"url.path": scope["path"][:200]}, True)


def annotate(attributes: Mapping[str, Any], error: bool = False) -> None:
    """Attributes on the current span (None values left out); ``error``: its status is ERROR."""
    current = _current()
    if current is None:
        return
    current.set_attributes({k: v for k, v in attributes.items() if v is not None})
    if error:
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR))


def measured(name: str, start: float, end: float, attributes: Mapping[str, Any] | None = None) -> None:
    """A child of the current span over a time measured elsewhere (``time.perf_counter()``
    seconds): the queue wait and the model pass, timed by the inference thread."""
    if _tracer is None or _current() is None or end < start:
        return
    shift = time.time_ns() - int(time.perf_counter() * 1e9)  # perf_counter -> epoch ns, now
    s = _tracer.start_span(name, start_time=int(start * 1e9) + shift, attributes=dict(attributes or {}))
    s.end(end_time=int(end * 1e9) + shift)


def injected(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``) in place of the
    client's, so that the next hop's spans are children of it; as they were when nothing is
    traced."""
    carrier = injected_dict()
    if not carrier:
        return headers
    kept = [(k, v) for k, v in headers if k.lower() not in _TRACE_HEADERS]
    return kept + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items()]


def injected_dict() -> dict[str, str]:
    """The propagation headers of the current span, for an httpx request ({} when not traced)."""
    if _tracer is None or _current() is None:
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def ids() -> tuple[str, str] | None:
    """The current span's trace and span ids in hex (for a log line), None when there is none."""
    if _tracer is None:
        return None
    from opentelemetry.trace import get_current_span

    ctx = get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
