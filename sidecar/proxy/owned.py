"""The indices the sidecar owns (the fleet's config store, the events index) are never reachable
from the proxy port, in any spelling: a name or pattern in the path, an index named in a body
(``_bulk`` and ``_msearch`` lines, ``_mget`` docs, ``_reindex`` source and dest, ``_aliases``
actions, a terms lookup), ``*``/``_all`` with ``expand_wildcards`` that reaches hidden indices.
The owned indices are created hidden, so a plain ``*`` or ``_all`` on OpenSearch and
Elasticsearch does not expand to them. A refused request gets 403 in OpenSearch's shape (the
security plugin's ``security_exception``) before the cluster has the whole of it, so nothing
of it is applied.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl, unquote

from sidecar.proxy.asgi import BodyTooLarge, Message, Receive, Scope
from sidecar.proxy.request import WBITS

# keys whose values name indices or aliases in the request bodies of OpenSearch's APIs
_INDEX_KEYS = frozenset({"index", "_index", "indices", "alias", "aliases", "index_pattern", "index_patterns"})
_BUFFER = 1024 * 1024  # a JSON body is read whole up to this size to find the indices it names
_LINE = 64 * 1024  # an NDJSON line up to this size is read for the indices it names
_QUERY_LANGUAGES = ("_sql", "_ppl", "_query")  # bodies that name indices in their own language


class OwnedIndexRefused(Exception):
    """The request names an index the sidecar owns."""

    status = 403
    kind = "security_exception"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no permissions: [{name}] names an index the rerank sidecar keeps for itself;"
            " it is not served on the proxy listener"
        )


def _decoded_path(scope: Scope) -> str:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1")
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path.replace("\\", "/")


class Owned:
    """The owned index names and the checks of a request against them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(sorted({n for n in names if n}))

    def __bool__(self) -> bool:
        return bool(self.names)

    def hit(self, expression: Any, hidden_too: bool = False) -> str | None:
        """The part of an index expression (a comma list, a list of them) that reaches an owned
        index: its name, a pattern matching it, or (``hidden_too``) ``*`` and ``_all``."""
        if isinstance(expression, (list, tuple)):
            for item in expression:
                found = self.hit(item, hidden_too)
                if found:
                    return found
            return None
        if not isinstance(expression, str):
            return None
        for part in expression.split(","):
            name = part.strip()
            if not name or name.startswith("-") or ":" in name:  # an exclusion, a remote cluster
                continue
            name = name.lstrip("+")
            if name in ("*", "_all"):
                if hidden_too:
                    return name
                continue  # hidden indices are not expanded by a bare * or _all
            low = name.lower()  # index names are lower case: a mixed-case spelling is no other index
            if any(low == n.lower() or ("*" in low and fnmatchcase(n.lower(), low)) for n in self.names):
                return name
        return None

    def check_target(self, scope: Scope) -> None:
        """Refuse a path or query string that names an owned index."""
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        expand = ",".join(v for k, v in params if k == "expand_wildcards").lower()
        hidden_too = "all" in expand or "hidden" in expand
        segments = [s for s in _decoded_path(scope).split("/") if s not in ("", ".", "..")]
        targets = [s for s in segments if not s.startswith("_")]
        if hidden_too and (not targets or segments[0].startswith("_")):
            targets.append("_all")  # /_search?expand_wildcards=all reaches every index
        targets += [v for k, v in params if k in ("index", "indices")]
        for target in targets:
            found = self.hit(target, hidden_too)
            if found:
                raise OwnedIndexRefused(found)

    def check_json(self, doc: Any) -> None:
        """Refuse a body that names an owned index under an index key, at any depth."""
        stack = [doc]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for k, v in node.items():
                    if k in _INDEX_KEYS:
                        found = self.hit(v)
                        if found:
                            raise OwnedIndexRefused(found)
                    if isinstance(v, (dict, list)):
                        stack.append(v)
            elif isinstance(node, list):
                stack.extend(x for x in node if isinstance(x, (dict, list)))

    def check_text(self, text: bytes) -> None:
        """Refuse a body that holds an owned index's name anywhere (a query language's text)."""
        low = text.lower()
        for n in self.names:
            if n.lower().encode() in low:
                raise OwnedIndexRefused(n)


class GuardedReceive:
    """``receive`` for a request that passes through: its body is read for owned indices as it
    streams (NDJSON line by line, a JSON body of up to 1 MiB whole, a query language's text
    throughout), and OwnedIndexRefused is raised before its last part is handed on."""

    def __init__(self, receive: Receive, owned: Owned, scope: Scope, encoding: str, limit: int) -> None:
        self._receive = receive
        self.owned = owned
        self.limit = limit
        path = _decoded_path(scope)
        self.ndjson = any(op in path for op in ("_bulk", "_msearch"))
        self.text = any(op in path for op in _QUERY_LANGUAGES)
        self._inflate = zlib.decompressobj(WBITS[encoding]) if encoding in WBITS else None
        self._inflated = 0
        self._pending = b""  # NDJSON: the line not yet ended; JSON: the body so far
        self._whole = True
        self._tail = b""

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        last = not message.get("more_body", False)
        if self._inflate is None:
            self._feed(chunk, last)
            return message
        try:  # inflated in bounded steps, each one read and let go: a bomb never sits in memory
            data = self._inflate.decompress(chunk, _BUFFER)
            while True:
                self._inflated += len(data)
                if self._inflated > self.limit:
                    raise BodyTooLarge(b"")
                self._feed(data, False)
                if not self._inflate.unconsumed_tail:
                    break
                data = self._inflate.decompress(self._inflate.unconsumed_tail, _BUFFER)
        except zlib.error:
            self._inflate = None  # not ours to judge: the cluster refuses a broken encoding itself
        if last:
            self._feed(b"", True)
        return message

    def _feed(self, chunk: bytes, last: bool) -> None:
        if self.text:
            window = self._tail + chunk
            self.owned.check_text(window)
            longest = max(len(n) for n in self.owned.names)
            self._tail = window[-longest:]
        if self.ndjson:
            data = self._pending + chunk
            lines = data.split(b"\n")
            self._pending = lines.pop() if not last else b""
            for line in lines:
                self._line(line)
            if len(self._pending) > _LINE:
                self._pending = b""  # a long source line: not an action or a header
            return
        if self._whole:
            self._pending += chunk
            if len(self._pending) > _BUFFER:
                self._whole, self._pending = False, b""
                self.text = True  # too large to read whole: its text is searched instead
                self._feed(chunk, last)
                return
        if last and self._whole and self._pending.strip():
            try:
                doc = json.loads(self._pending)
            except (ValueError, RecursionError):
                return
            self.owned.check_json(doc)

    def _line(self, line: bytes) -> None:
        if not line.strip() or len(line) > _LINE:
            return
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            return
        self.owned.check_json(doc)


def owned_indices(config_store_index: str | None, events_index: str | None) -> Owned:
    """The indices this sidecar keeps for itself."""
    names: Sequence[str | None] = (config_store_index, events_index)
    return Owned(n for n in names if n)
