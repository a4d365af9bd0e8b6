"""A shared score cache on Valkey or Redis, under each sidecar's in-process LRU.

Keyed as the local cache is (model, instruction, query, document, hashed) plus a fingerprint
of the model's settings, so a changed model never reads another's scores. A window's keys are
looked up in one round trip (MGET) and its new scores written in one pipeline off the search
path, each with a TTL. Fail-open: a cache that errs or is slower than ``timeout_ms`` answers
as if it held nothing (the model scores the window), is skipped for ``retry_s``, and says so
in health; it is never an error for a search.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sidecar.config import CacheConfig
from sidecar.masking import mask_url

log = logging.getLogger(__name__)


class SharedCache:
    """One connection pool to the cache for the whole sidecar."""

    def __init__(self, cfg: CacheConfig) -> None:
        self.cfg = cfg
        password = os.environ.get(cfg.password_env) if cfg.password_env else None
        timeout = cfg.timeout_ms / 1000
        self.client = aioredis.Redis.from_url(
            cfg.url,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=0,
            retry_on_timeout=False,
        )
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.error: str | None = None
        self._down_until = 0.0
        self._writes: set[asyncio.Task[None]] = set()

    def _prefix(self, fingerprint: str) -> bytes:
        return f"{self.cfg.prefix}{fingerprint}:".encode()

    def _failed(self, e: BaseException) -> None:
        self.errors += 1
        message = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if self.error is None:
            log.warning(
                "shared cache %s: %s; scoring without it for %.0f s",
                mask_url(self.cfg.url),
                mask_url(message),
                self.cfg.retry_s,
            )
        self.error = mask_url(message)
        self._down_until = time.monotonic() + self.cfg.retry_s

    @property
    def up(self) -> bool:
        return time.monotonic() >= self._down_until

    async def get_many(self, fingerprint: str, keys: Sequence[bytes]) -> list[float | None]:
        """The cached scores of ``keys`` (None where it has none, or for all when it is down)."""
        if not keys:
            return []
        if not self.up:
            self.misses += len(keys)
            return [None] * len(keys)
        prefix = self._prefix(fingerprint)
        try:
            raw = await asyncio.wait_for(
                self.client.mget([prefix + k for k in keys]), self.cfg.timeout_ms / 1000
            )
        except (RedisError, OSError, asyncio.TimeoutError) as e:
            self._failed(e)
            self.misses += len(keys)
            return [None] * len(keys)
        if self.error is not None:
            log.info("shared cache %s: answering again", mask_url(self.cfg.url))
            self.error = None
        out = [struct.unpack("<d", v)[0] if isinstance(v, bytes) and len(v) == 8 else None for v in raw]
        found = sum(1 for v in out if v is not None)
        self.hits += found
        self.misses += len(keys) - found
        return out

    def put_many(self, fingerprint: str, items: Sequence[tuple[bytes, float]]) -> None:
        """Write scores in one pipeline, off the search path (a failure only counts)."""
        if not items or not self.up:
            return

        prefix = self._prefix(fingerprint)

        async def write() -> None:
            try:
                pipe = self.client.pipeline(transaction=False)
                for key, score in items:
                    pipe.set(prefix + key, struct.pack("<d", score), ex=self.cfg.ttl_s)
                await asyncio.wait_for(pipe.execute(), max(1.0, self.cfg.timeout_ms / 1000 * 10))
            except (RedisError, OSError, asyncio.TimeoutError) as e:
                self._failed(e)

        task = asyncio.ensure_future(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def info(self) -> dict[str, Any]:
        looked = self.hits + self.misses
        return {
            "url": mask_url(self.cfg.url),
            "state": "ok" if self.error is None else "error",
            "error": self.error,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / looked if looked else None,
            "errors": self.errors,
        }

    async def aclose(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=2)
        await self.client.aclose()
