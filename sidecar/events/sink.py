"""An optional second home for events: an OpenSearch index, so a fleet of sidecars shares one history."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from opensearchpy import JSONSerializer, OpenSearch, Urllib3HttpConnection
from opensearchpy.exceptions import OpenSearchException, RequestError
from opensearchpy.helpers import BulkIndexError, bulk

from sidecar.credentials import basic_auth
from sidecar.events.ubi import query_record
from sidecar.jsontext import json_text


class _Serializer(JSONSerializer):
    """opensearch-py's serializer, writing any string (lone surrogates escaped)."""

    def dumps(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        return json_text(data, default=self.default, separators=(",", ":"))


class OpenSearchSink:
    """Bulk-indexes event batches with opensearch-py's bulk helper; runs on the event store's
    writer thread, never on a search."""

    def __init__(
        self,
        url: str,
        index: str,
        *,
        verify: ssl.SSLContext | bool = True,
        basic_auth_env: str | None = None,
        timeout_s: float = 10.0,
        document: Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None] | None = None,
        hidden: bool = False,
    ) -> None:
        self.index = index
        self.hidden = hidden  # made a hidden index before the first write (the sidecar's own)
        self.document = document or _event_document
        auth = basic_auth(basic_auth_env, required=False)  # unset: the sink writes without credentials
        tls: dict[str, Any] = {}
        if isinstance(verify, ssl.SSLContext):
            tls = {"ssl_context": verify}
        elif url.startswith("https://"):
            tls = {"verify_certs": verify, "ssl_show_warn": verify}
        self.client = OpenSearch(
            hosts=[url],
            http_auth=auth,
            timeout=timeout_s,
            max_retries=0,
            connection_class=Urllib3HttpConnection,
            serializer=_Serializer(),
            **tls,
        )

    def _actions(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        docs = (self.document(event) for event in batch)
        return [{"_index": self.index, "_id": d[0], "_source": d[1]} for d in docs if d is not None]

    def __call__(self, batch: list[dict[str, Any]]) -> None:
        actions = self._actions(batch)
        if not actions:
            return
        try:
            if self.hidden:
                try:
                    self.client.indices.create(
                        index=self.index, body={"settings": {"index": {"hidden": True}}}
                    )
                except RequestError:
                    pass  # it exists already
                self.hidden = False
            bulk(self.client, actions, refresh=False)
        except BulkIndexError as e:
            raise OSError(f"bulk into {self.index} had errors: {json.dumps(e.errors[:1])[:300]}") from None
        except OpenSearchException as e:
            raise OSError(f"bulk into {self.index} failed: {e}") from None

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _event_document(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    stamp = datetime.fromtimestamp(event["time"], timezone.utc).isoformat()
    return event["id"], {**event, "@timestamp": stamp}


def ubi_query_document(event: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The ``ubi_queries`` record of a search that has a query_id (None for the others)."""
    if not event.get("query_id") or event.get("served") is None:
        return None
    exp = event.get("experiment") or {}
    attributes = {"rerank_status": event["status"], "route": event.get("route")}
    if exp:
        attributes |= {"experiment": exp["name"], "arm": exp["served"]}
    doc = query_record(
        event["query_id"],
        event.get("query"),
        event.get("client_id"),
        event["served"],
        attributes,
        event["time"],
    )
    return event["query_id"], doc


class Sinks:
    """Several sinks on one writer thread; an error of one does not keep the others from their batch."""

    def __init__(self, sinks: Sequence[OpenSearchSink]) -> None:
        self.sinks = list(sinks)

    def __call__(self, batch: list[dict[str, Any]]) -> None:
        errors = []
        for sink in self.sinks:
            try:
                sink(batch)
            except OSError as e:
                errors.append(str(e))
        if errors:
            raise OSError("; ".join(errors))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
