"""Credentials for a cluster the sidecar's own tools call, read from the environment."""

from __future__ import annotations

import os

from sidecar.config import ConfigError


def basic_auth(
    env: str | None, option: str = "--auth-env", *, required: bool = True
) -> tuple[str, str] | None:
    """``(user, password)`` from an env var holding ``user:password``; None when no var is
    named; when it is named but not set, ConfigError (naming ``option``), or None where the
    caller goes on without credentials (``required=False``)."""
    if not env:
        return None
    user, _, password = os.environ.get(env, "").partition(":")
    if not user and not required:
        return None
    if not user:
        raise ConfigError(f"{option}: environment variable {env} is not set (user:password)")
    return user, password
