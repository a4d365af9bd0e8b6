"""Error responses in OpenSearch's own shape."""

from __future__ import annotations

import json
from typing import Any


def error_body(status: int, error_type: str, reason: str, **extra: Any) -> bytes:
    """``{"error": {"root_cause": [...], "type", "reason"}, "status"}`` as OpenSearch writes it
    (``extra`` keys beside ``status``)."""
    cause = {"type": error_type, "reason": reason}
    doc: dict[str, Any] = {"error": {"root_cause": [cause], **cause}, "status": status, **extra}
    return json.dumps(doc).encode()
