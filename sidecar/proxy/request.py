"""What an intercepted request says, read without I/O: its headers, body and JSON answers."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

from sidecar.events.event import Reason
from sidecar.proxy.asgi import Scope


class Unreadable(ValueError):
    """A body the sidecar cannot read; the cluster gets it unchanged."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def header(scope: Scope, name: bytes) -> str:
    """A request header's value (latin-1), or an empty string."""
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v).decode("latin-1")
    return ""


def search_context(scope: Scope) -> str | None:
    """The ``X-Search-Context`` header (UTF-8): the subject vague queries are about."""
    for k, v in scope["headers"]:
        if k == b"x-search-context":
            return bytes(v).decode("utf-8", "replace").strip() or None
    return None


def rerank_headers(scope: Scope) -> dict[str, str]:
    """The request's ``X-Rerank*`` headers, the only ones an event keeps."""
    return {
        k.decode("latin-1"): v.decode("utf-8", "replace")
        for k, v in scope["headers"]
        if k.startswith(b"x-rerank")
    }


def header_map(scope: Scope) -> dict[str, str]:
    """All of the request's headers by lower-case name (where an experiment looks for the
    user's identity; never recorded)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def answers_in_json(scope: Scope, params: Sequence[tuple[str, str]]) -> bool:
    """Whether the client asked for a JSON answer, the only one the sidecar rewrites: no
    ``?format`` but json, and an ``Accept`` (if any) that takes JSON (vendored types such as
    ``application/vnd.elasticsearch+json; compatible-with=8`` too) or anything. YAML, CBOR and
    Smile answers go to the client as the cluster writes them."""
    fmt = next((v for k, v in params if k == "format"), "").strip().lower()
    if fmt not in ("", "json"):
        return False
    accept = header(scope, b"accept").strip().lower()
    if not accept:
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip()
        if "json" in media or media in ("*/*", "application/*"):
            return True
    return False


def content_type(scope: Scope, default: bytes) -> bytes:
    """The client's Content-Type, kept on the widened request (a vendored JSON type and its
    ``compatible-with`` must match its Accept); ``default`` when it sent none."""
    value = header(scope, b"content-type").strip()
    return value.encode("latin-1") if value else default


def decode_body(scope: Scope, body: bytes) -> bytes | None:
    """The request body as plain bytes, or None when its encoding is not one we read."""
    encoding = header(scope, b"content-encoding").strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(body)
    except zlib.error:
        return None
    return None


def json_body(scope: Scope, body: bytes) -> Any:
    """The parsed JSON body (None for an empty one); Unreadable when it cannot be read."""
    if not body:
        return None
    if "json" not in header(scope, b"content-type").lower():
        raise Unreadable(Reason.CONTENT_TYPE)
    plain = decode_body(scope, body)
    if plain is None:
        raise Unreadable(Reason.CONTENT_ENCODING)
    try:
        return json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Unreadable(Reason.UNPARSED_BODY) from None


def msearch_lines(raw: bytes) -> list[tuple[Any, Any]] | None:
    """An ``_msearch`` body as (header, body) pairs, read as OpenSearch and Elasticsearch read
    NDJSON: a line per header and per body, each ended by a newline (``\r\n`` too), a blank
    header meaning ``{}`` (the URL's index and options), a last header without a body ignored.
    None when they would refuse it (a last line without its newline, a line that is not JSON)
    or read it differently (a leading blank line: OpenSearch skips it, Elasticsearch 8 reads
    a blank header): the cluster then gets the request as it came and answers for itself."""
    if not raw.endswith(b"\n") or raw.startswith(b"\n"):
        return None
    lines = raw[:-1].split(b"\n")
    if len(lines) % 2:
        lines.pop()  # a header with no body after it: the cluster reads no search there
    pairs: list[tuple[Any, Any]] = []
    try:
        for head, body in zip(lines[0::2], lines[1::2], strict=True):
            pairs.append((json.loads(head) if head.strip() else {}, json.loads(body)))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return pairs


def dumps(doc: Any, pretty: bool = False) -> bytes:
    """JSON as UTF-8; text with lone surrogates (valid as JSON escapes, not as UTF-8) stays escaped."""
    layout: dict[str, Any] = (
        {"indent": 2, "separators": (",", " : ")} if pretty else {"separators": (",", ":")}
    )
    end = b"\n" if pretty else b""
    try:
        return json.dumps(doc, ensure_ascii=False, **layout).encode() + end
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, **layout).encode() + end


def pretty(params: Sequence[tuple[str, str]]) -> bool:
    """Whether the client asked for ``?pretty``."""
    return any(k == "pretty" and v.lower() in ("", "true") for k, v in params)
