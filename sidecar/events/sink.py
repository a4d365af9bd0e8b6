"""An optional second home for events: an OpenSearch index, so a fleet of sidecars shares one history."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from opensearchpy import OpenSearch, Urllib3HttpConnection
from opensearchpy.exceptions import OpenSearchException
from opensearchpy.helpers import BulkIndexError, bulk


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
    ) -> None:
        self.index = index
        auth = None
        if basic_auth_env:
            user, _, password = os.environ.get(basic_auth_env, "").partition(":")
            auth = (user, password) if user else None
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
            **tls,
        )

    def _actions(self, batch: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for event in batch:
            stamp = datetime.fromtimestamp(event["time"], timezone.utc).isoformat()
            yield {"_index": self.index, "_id": event["id"], "_source": {**event, "@timestamp": stamp}}

    def __call__(self, batch: list[dict[str, Any]]) -> None:
        try:
            bulk(self.client, self._actions(batch), refresh=False)
        except BulkIndexError as e:
            raise OSError(f"bulk into {self.index} had errors: {json.dumps(e.errors[:1])[:300]}") from None
        except OpenSearchException as e:
            raise OSError(f"bulk into {self.index} failed: {e}") from None

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
