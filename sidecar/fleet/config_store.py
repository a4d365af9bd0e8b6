"""The fleet's one config, kept in an OpenSearch (or Elasticsearch) index.

Each sidecar keeps its own listeners, upstream, admin, TLS, events, UBI and config store
settings (``LOCAL_KEYS``: what differs per machine and needs a restart); the rest, the
shared part (models, routes, limits), is one document. A change made on any sidecar (``PUT
/_sidecar/config``, or its config file) is written there with optimistic concurrency
(``if_seq_no``/``if_primary_term``): a write based on a version that is no longer current is
refused with 409 and what changed. Every sidecar reads the document every ``interval_s`` and
applies a newer version as a hot reload; one that cannot reach the store keeps its last good
config and says so in health.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from sidecar.config import Config, ConfigError, ConfigStoreConfig, parse_config
from sidecar.credentials import basic_auth
from sidecar.masking import mask_url

log = logging.getLogger(__name__)

LOCAL_KEYS = (
    "listen",
    "upstream",
    "admin",
    "events",
    "tls",
    "ubi",
    "config_store",
    "cache",
    "limits",
    "log_format",
    "tracing",
)
# hidden: a plain * or _all of the cluster's APIs does not expand to it (the proxy refuses the
# rest of the ways to name it: sidecar/proxy/owned.py)
_MAPPING = {
    "settings": {"index": {"hidden": True}},
    "mappings": {"dynamic": False, "properties": {"updated": {"type": "double"}, "by": {"type": "keyword"}}},
}


def store_key(cfg: ConfigStoreConfig) -> bytes:
    """The fleet's signing key from ``config_store.key_env`` (ConfigError when it is not set)."""
    key = os.environ.get(cfg.key_env, "")
    if len(key) < 16:
        raise ConfigError(
            f"config_store.key_env: environment variable {cfg.key_env} must hold the fleet's key"
            " (at least 16 characters, the same on every sidecar): the stored config is signed with it"
        )
    return key.encode()


def sign(key: bytes, body: dict[str, Any]) -> str:
    """The HMAC-SHA256 of a stored document's config, author and time."""
    message = json.dumps([body["config"], body.get("by", ""), body.get("updated", 0.0)]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class StoreConflict(Exception):
    """The stored config changed since this sidecar read it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreUnavailable(Exception):
    """The store could not be read or written."""


@dataclass(frozen=True)
class Version:
    """A stored config's concurrency token and its document version."""

    seq_no: int
    primary_term: int
    number: int
    by: str = ""
    updated: float = 0.0
    signature: str = ""  # a document recreated with the same seq_no is still another one


def shared_part(config: Config) -> dict[str, Any]:
    """What the fleet shares of a config (JSON-ready)."""
    return config.model_dump(mode="json", exclude=set(LOCAL_KEYS))


def merged(local: Config, shared: dict[str, Any]) -> Config:
    """This sidecar's config with the fleet's shared part."""
    own = local.model_dump(mode="json", include=set(LOCAL_KEYS))
    return parse_config({**own, **shared})


def changed_keys(before: Any, after: Any, path: str = "") -> list[str]:
    """Key paths whose values differ (``routes.0.min_score``), for a conflict's message."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            out += changed_keys(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out += changed_keys(b, a, f"{path}.{i}" if path else str(i))
        return out
    return [] if before == after else [path or "(all)"]


def _same(a: Version | None, b: Version | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.seq_no, a.primary_term, a.signature) == (b.seq_no, b.primary_term, b.signature)


class ConfigStore:
    """The shared config document, and what this sidecar last read or wrote of it."""

    def __init__(
        self, cfg: ConfigStoreConfig, upstream: str, verify: ssl.SSLContext | bool, node: str | None = None
    ) -> None:
        self.cfg = cfg
        self.key = store_key(cfg)
        self.url = (cfg.url or upstream).rstrip("/")
        self.node = node or socket.gethostname()
        self.http = httpx.AsyncClient(
            base_url=self.url,
            auth=basic_auth(cfg.basic_auth_env, "config_store.basic_auth_env"),
            verify=verify,
            timeout=10,
            trust_env=False,
        )
        self.seen: Version | None = None  # the version this sidecar runs
        self.shared: dict[str, Any] | None = None  # its shared part
        self.error: str | None = None
        self.last_ok: float | None = None
        self.recreated: float | None = None  # when the store was found deleted and written again
        self._lock = asyncio.Lock()

    @property
    def _doc(self) -> str:
        return f"/{self.cfg.index}/_doc/{self.cfg.document}"

    async def aclose(self) -> None:
        await self.http.aclose()

    def health(self) -> dict[str, Any]:
        """What health shows of the store."""
        v = self.seen
        return {
            "index": self.cfg.index,
            "url": mask_url(self.url),
            "version": v.number if v else None,
            "by": v.by if v else None,
            "updated": v.updated if v else None,
            "state": "error" if self.error else "ok",
            "error": self.error,
            "last_ok": self.last_ok,
            "recreated": self.recreated,
        }

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise StoreUnavailable(mask_url(f"{self.url}: {type(e).__name__}: {e}")) from None
        if r.status_code >= 500 or r.status_code in (401, 403):
            raise StoreUnavailable(f"{self.url}{path}: HTTP {r.status_code}: {r.text[:200]}")
        return r

    async def read(self) -> tuple[Version, dict[str, Any]] | None:
        """The stored shared config and its version; None when there is none yet."""
        r = await self._call("GET", self._doc)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise StoreUnavailable(f"{self.url}{self._doc}: HTTP {r.status_code}: {r.text[:200]}")
        doc = r.json()
        source = doc.get("_source") or {}
        try:
            shared = json.loads(source["config"])
            signature = source.get("signature")
            expected = sign(self.key, source)
        except (KeyError, TypeError, ValueError):
            raise StoreUnavailable(f"{self._doc}: not a config document") from None
        if not isinstance(signature, str) or not hmac.compare_digest(signature, expected):
            raise StoreUnavailable(
                f"{self._doc}: the stored config is not signed with this fleet's key"
                f" ({self.cfg.key_env}): refused, written by someone else"
            )
        version = Version(
            doc["_seq_no"],
            doc["_primary_term"],
            doc.get("_version", 0),
            source.get("by", ""),
            source.get("updated", 0.0),
            signature,
        )
        return version, shared

    async def write(self, shared: dict[str, Any]) -> Version:
        """Write the shared config as the next version of the one this sidecar runs (the first
        one when there is none): StoreConflict when another was written meanwhile."""
        now = time.time()
        body: dict[str, Any] = {"config": json.dumps(shared, sort_keys=True), "by": self.node, "updated": now}
        body["signature"] = sign(self.key, body)
        if self.seen is None:
            await self._call("PUT", f"/{self.cfg.index}", json=_MAPPING)  # 400 when it exists: fine
            r = await self._call("PUT", f"/{self.cfg.index}/_create/{self.cfg.document}", json=body)
        else:
            params = {"if_seq_no": self.seen.seq_no, "if_primary_term": self.seen.primary_term}
            r = await self._call("PUT", self._doc, params=params, json=body)
        if r.status_code == 409:
            raise StoreConflict(await self._conflict())
        if r.status_code not in (200, 201):
            raise StoreUnavailable(f"{self.url}{self._doc}: HTTP {r.status_code}: {r.text[:200]}")
        doc = r.json()
        version = Version(
            doc["_seq_no"], doc["_primary_term"], doc.get("_version", 0), self.node, now, body["signature"]
        )
        self.seen, self.shared = version, shared
        self._ok()
        return version

    async def _conflict(self) -> str:
        found = await self.read()
        if found is None:
            return "the stored config changed meanwhile"
        version, stored = found
        keys = changed_keys(self.shared or {}, stored)
        what = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
        return (
            f"the fleet's config is at version {version.number}"
            f" (written by {version.by or 'another sidecar'}),"
            f" not {self.seen.number if self.seen else 'none'} as this sidecar read it;"
            f" changed: {what or 'nothing'}."
            " Read it again (GET /_sidecar/config) and make the change on it"
        )

    def _ok(self) -> None:
        if self.error:
            log.info("config store: %s reachable again", self.url)
        self.error, self.last_ok = None, time.time()

    def failed(self, error: str) -> None:
        error = mask_url(error)
        if error != self.error:
            log.error("config store: %s (the last good config stays)", error)
        self.error = error

    async def change(self, local: Config, new: Config, apply: Callable[[Config], Awaitable[None]]) -> Version:
        """A change made on this sidecar: checked against the stored version, applied here
        (so a config that cannot load is never stored), then written. On a conflict the
        change is not applied (or is undone) and StoreConflict says what changed."""
        async with self._lock:
            found = await self.read()
            if found is None and self.seen is not None:
                await self._recreate(local)
                found = await self.read()
            if not _same(found[0] if found else None, self.seen):
                raise StoreConflict(await self._conflict())
            await apply(new)
            try:
                return await self.write(shared_part(new))
            except (StoreConflict, StoreUnavailable):
                await apply(local)  # the running config goes back to what the fleet has
                raise

    async def _recreate(self, local: Config) -> None:
        """The document (or its index) was deleted: written again from the last good config."""
        log.warning(
            "config store: %s%s is gone (deleted?): written again from the config this sidecar runs",
            self.url,
            self._doc,
        )
        self.seen = None
        try:
            await self.write(self.shared if self.shared is not None else shared_part(local))
        except StoreConflict:  # another sidecar wrote it again first: the next read takes that one
            return
        self.recreated = time.time()

    async def sync(self, local: Config, apply: Callable[[Config], Awaitable[None]]) -> bool:
        """Bring this sidecar to the stored version (or store its own config when there is
        none yet). True when it applied a new one."""
        async with self._lock:
            found = await self.read()
            if found is None and self.seen is not None:
                await self._recreate(local)
                return False
            if found is None:
                try:
                    await self.write(shared_part(local))
                except StoreConflict:
                    found = await self.read()
                if found is None:
                    return False
            version, shared = found
            if self.seen is not None and _same(version, self.seen):
                self._ok()
                return False
            try:
                new = merged(local, shared)
                if shared != shared_part(local):
                    await apply(new)
            except ConfigError as e:
                raise StoreUnavailable(f"version {version.number} cannot be applied here: {e}") from None
            self.seen, self.shared = version, shared
            self._ok()
            log.info(
                "config: version %d of the fleet's config (by %s) applied", version.number, version.by or "?"
            )
            return True

    async def follow(self, current: Callable[[], Config], apply: Callable[[Config], Awaitable[None]]) -> None:
        """Read the store every ``interval_s`` and apply newer versions, until cancelled."""
        while True:
            try:
                await self.sync(current(), apply)
            except StoreUnavailable as e:
                self.failed(str(e))
            except Exception as e:  # a bug must not stop the following
                log.exception("config store: following failed")
                self.failed(f"{type(e).__name__}: {e}")
            await asyncio.sleep(self.cfg.interval_s)
