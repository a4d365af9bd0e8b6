"""Who a search is for, and which bucket that puts them in: a stable hash of a configured
identity (UBI ``client_id``, a header, or a cookie), so a user stays in one arm."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any

from sidecar.events.ubi import Click

if TYPE_CHECKING:  # config imports this module for check_identity
    from sidecar.config import ExperimentConfig

IDENTITY_SOURCES = ("ubi.client_id", "header:", "cookie:")


def _cookie(headers: Mapping[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def identity(sources: Sequence[str], ubi: Mapping[str, Any] | None, headers: Mapping[str, str]) -> str | None:
    """The first identity the search carries, in the configured order (``headers`` with
    lower-case names); None when it carries none."""
    for spec in sources:
        if spec == "ubi.client_id":
            value = ubi.get("client_id") if ubi else None
        elif spec.startswith("header:"):
            value = headers.get(spec[len("header:") :].lower())
        else:
            value = _cookie(headers, spec[len("cookie:") :])
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return f"{spec}={str(value).strip()}"
    return None


def bucket(experiment: str, who: str) -> float:
    """A number in [0, 1) fixed by the experiment's name and the identity."""
    digest = hashlib.blake2b(f"{experiment}\0{who}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def seed(*parts: str) -> int:
    """A stable seed from strings (the same search draws the same interleaving coin flips)."""
    return int.from_bytes(hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest(), "big")


def clicker(
    click: Click, headers: Mapping[str, str] | None = None
) -> Callable[[ExperimentConfig], str | None]:
    """The identity a click carries under an experiment's identity settings: its UBI event's
    client_id, or ``headers`` (the write's, lower-case names) for header and cookie identities."""
    ubi = {"client_id": click.client_id} if click.client_id is not None else None
    return lambda cfg: identity(cfg.identity, ubi, headers or {})
