"""An optional second home for events: an OpenSearch index, so a fleet of sidecars shares one history."""

from __future__ import annotations

import json
import os
import ssl
from datetime import datetime, timezone
from typing import Any

import httpx


class OpenSearchSink:
    """Bulk-indexes event batches; runs on the event store's writer thread, never on a search."""

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
        self.client = httpx.Client(base_url=url, verify=verify, auth=auth, timeout=timeout_s, trust_env=False)

    def __call__(self, batch: list[dict[str, Any]]) -> None:
        lines: list[str] = []
        for event in batch:
            doc = dict(
                event, **{"@timestamp": datetime.fromtimestamp(event["time"], timezone.utc).isoformat()}
            )
            lines.append(json.dumps({"index": {"_index": self.index, "_id": event["id"]}}))
            lines.append(json.dumps(doc, ensure_ascii=False))
        r = self.client.post(
            "/_bulk", content="\n".join(lines) + "\n", headers={"content-type": "application/x-ndjson"}
        )
        if r.status_code >= 300:
            raise OSError(f"bulk into {self.index} answered {r.status_code}")
        body = r.json()
        if body.get("errors"):
            failed: dict[str, Any] = next(
                (i for i in body.get("items", []) if next(iter(i.values())).get("error")), {}
            )
            raise OSError(f"bulk into {self.index} had errors: {json.dumps(failed)[:300]}")

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()
