"""JSON that can always be written as UTF-8: text with lone surrogates (valid as JSON escapes such
as ``"\\ud800"``, not as UTF-8) stays escaped instead of failing the writer that encodes it."""

from __future__ import annotations

import json
from typing import Any


def json_text(doc: Any, **layout: Any) -> str:
    """``json.dumps`` of ``doc`` that encodes to UTF-8 whatever strings it holds."""
    text = json.dumps(doc, ensure_ascii=False, **layout)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, **layout)
    return text


def json_bytes(doc: Any, **layout: Any) -> bytes:
    """``doc`` as UTF-8 JSON (surrogates escaped)."""
    try:
        return json.dumps(doc, ensure_ascii=False, **layout).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, **layout).encode("utf-8")
