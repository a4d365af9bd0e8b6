"""Credentials never shown or logged: the user info of a URL (``https://user:secret@host``) is
masked wherever a URL is shown (the admin API's config and health, the start log) or logged."""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/@\s]*)@")
MASK = "***"


def mask_url(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text) if "@" in text else text


def mask_urls(doc: Any) -> Any:
    """A JSON-like document with every string's URLs masked (a copy)."""
    if isinstance(doc, str):
        return mask_url(doc)
    if isinstance(doc, dict):
        return {k: mask_urls(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [mask_urls(v) for v in doc]
    return doc
