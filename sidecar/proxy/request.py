"""What an intercepted request says, read without I/O: its headers, body and JSON answers."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

from sidecar.jsontext import compact, json_bytes
from sidecar.proxy.asgi import Scope
from sidecar.vocab import Reason


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
    return by_name(scope["headers"])


def by_name(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Raw headers by lower-case name (latin-1)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}


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


class InflatedTooLarge(ValueError):
    """A compressed body that inflates past the limit (counted while inflating)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body inflates to more than {limit} bytes (max_search_body_bytes)")
        self.limit = limit


# the zlib window of each Content-Encoding the sidecar reads
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflate(body: bytes, encoding: str, limit: int | None = None) -> bytes | None:
    """A ``gzip``/``deflate`` body inflated up to ``limit`` bytes (InflatedTooLarge past it: a
    small gzip body can inflate a thousandfold); None for a broken or unknown encoding."""
    if encoding not in WBITS:
        return None
    inflater = zlib.decompressobj(WBITS[encoding])
    most = limit if limit is not None else 1 << 62
    try:
        out = inflater.decompress(body, most + 1)
        if len(out) > most or inflater.unconsumed_tail:
            raise InflatedTooLarge(most)
        return out + inflater.flush()
    except zlib.error:
        return None


def depth_over(doc: Any, most: int) -> bool:
    """Whether JSON nests deeper than ``most`` (counted without recursion)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > most:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False


def loads(raw: bytes | str, max_depth: int = 100) -> Any:
    """JSON as the sidecar reads a client's: ValueError for what is not JSON, nests deeper than
    ``max_depth`` or holds what Python will not parse (a 5,000-digit number)."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, RecursionError, ValueError) as e:
        raise ValueError(str(e)[:200]) from None
    if depth_over(doc, max_depth):
        raise ValueError(f"nested deeper than {max_depth}")
    return doc


def msearch_lines(raw: bytes, max_depth: int = 100) -> list[tuple[Any, Any]] | None:
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
            pairs.append((loads(head, max_depth) if head.strip() else {}, loads(body, max_depth)))
    except ValueError:
        return None
    return pairs


def dumps(doc: Any, pretty: bool = False) -> bytes:
    """JSON as UTF-8; text with lone surrogates (valid as JSON escapes, not as UTF-8) stays escaped."""
    if not pretty:
        return compact(doc)
    return json_bytes(doc, indent=2, separators=(",", " : ")) + b"\n"


def pretty(params: Sequence[tuple[str, str]]) -> bool:
    """Whether the client asked for ``?pretty``."""
    return any(k == "pretty" and v.lower() in ("", "true") for k, v in params)


@dataclass(frozen=True)
class Incoming:
    """A search request as the proxy reads it off the wire, once: what planning, the cluster
    calls and the answer need of the ASGI scope (the scope itself stays with pass-through)."""

    params: list[tuple[str, str]]
    rerank: dict[str, str]  # its X-Rerank* headers: the only ones an event keeps
    context: str | None  # X-Search-Context
    json: bool  # it takes a JSON answer, the only one the sidecar rewrites
    pretty: bool
    content_type: str  # as sent ("" when none)
    encoding: str  # Content-Encoding, lower-case ("" when none)
    raw_path: bytes  # the path as sent
    query_string: bytes
    forwarded: list[tuple[bytes, bytes]]  # its headers for the cluster (hop-by-hop ones removed)
    scope_headers: list[tuple[bytes, bytes]] = field(repr=False, default_factory=list)

    @cached_property
    def everyone(self) -> dict[str, str]:
        """Every header by lower-case name (where an experiment looks for the user; never kept)."""
        return by_name(self.scope_headers)

    def target(self, query_string: bytes | None = None) -> bytes:
        """The path for the cluster, with the query string as sent (or ``query_string``)."""
        qs = self.query_string if query_string is None else query_string
        return self.raw_path + b"?" + qs if qs else self.raw_path

    def widened_headers(self, default_type: bytes) -> list[tuple[bytes, bytes]]:
        """The headers of a request the sidecar rewrote: its framing and encoding are the
        sidecar's, its Content-Type the client's (``default_type`` when it sent none)."""
        out = [(k, v) for k, v in self.forwarded if k not in _WIDENED_DROP]
        out.append((b"content-type", self.content_type.encode("latin-1") or default_type))
        return out

    def decoded(self, body: bytes, limit: int | None = None) -> bytes | None:
        """The body as plain bytes by the encoding it was sent with (None for one the sidecar does
        not read); a compressed one inflated up to ``limit`` bytes (see ``inflate``)."""
        if self.encoding in ("", "identity"):
            return body
        return inflate(body, self.encoding, limit)

    def json_body(self, body: bytes, limit: int | None = None, max_depth: int = 100) -> Any:
        """The parsed JSON body (None for an empty one); Unreadable when it cannot be read,
        InflatedTooLarge when it inflates past ``limit``."""
        if not body:
            return None
        if "json" not in self.content_type.lower():
            raise Unreadable(Reason.CONTENT_TYPE)
        plain = self.decoded(body, limit)
        if plain is None:
            raise Unreadable(Reason.CONTENT_ENCODING)
        try:
            return loads(plain, max_depth)
        except ValueError:
            raise Unreadable(Reason.UNPARSED_BODY) from None


# what a request the sidecar rewrote does not keep of the client's headers
_WIDENED_DROP = frozenset({b"content-length", b"content-encoding", b"accept-encoding", b"content-type"})


def incoming(scope: Scope, forwarded: list[tuple[bytes, bytes]]) -> Incoming:
    """The search request of ``scope``; ``forwarded``: its headers as the cluster gets them."""
    params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return Incoming(
        params=params,
        rerank=rerank_headers(scope),
        context=search_context(scope),
        json=answers_in_json(scope, params),
        pretty=pretty(params),
        content_type=header(scope, b"content-type").strip(),
        encoding=header(scope, b"content-encoding").strip().lower(),
        raw_path=scope.get("raw_path") or scope["path"].encode(),
        query_string=scope["query_string"],
        forwarded=forwarded,
        scope_headers=scope["headers"],
    )
