"""Variants from an OpenAI-compatible chat endpoint (a small Qwen3 on vLLM, say), cached."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import replace
from typing import Any

import httpx

from sidecar.config.rewrite import LlmRewriteConfig
from sidecar.engine.cache import LRUCache, text_key
from sidecar.rewrite.rules import Rewrite, Rewriter, Variant

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "You rewrite search queries for a document search engine. Write up to {n} alternative "
    "queries that would find the same documents, each more specific than the original: complete "
    "the implied subject{context}, replace vague pronouns, expand abbreviations, standardize "
    "terms. Keep the language of the query. Do not add adjectives or requirements that the user "
    "did not state. Answer with a JSON array of strings and nothing else."
)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ARRAY = re.compile(r"\[.*\]", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


class LlmError(Exception):
    """The endpoint failed or answered something that holds no variants."""


def parse_variants(content: str) -> list[str]:
    """Variants from a reply: a JSON array, else one per line; reasoning blocks skipped."""
    text = _THINK.sub("", content).strip()
    found = _ARRAY.search(text)
    if found:
        try:
            items = json.loads(found.group(0))
        except ValueError:
            items = None
        if isinstance(items, list):
            return [str(i).strip() for i in items if isinstance(i, (str, int, float)) and str(i).strip()]
    lines = [_BULLET.sub("", ln).strip().strip('"') for ln in text.splitlines()]
    return [ln for ln in lines if ln]


class LlmRewriter:
    """One pooled client per endpoint; successful answers are cached by query and context."""

    def __init__(self, cfg: LlmRewriteConfig) -> None:
        self.cfg = cfg
        headers = {"content-type": "application/json"}
        if cfg.api_key_env and os.environ.get(cfg.api_key_env):
            headers["authorization"] = f"Bearer {os.environ[cfg.api_key_env]}"
        self._client = httpx.AsyncClient(
            base_url=cfg.url, headers=headers, timeout=cfg.timeout_ms / 1000, trust_env=False
        )
        self._cache: LRUCache[list[str]] = LRUCache(cfg.cache_size)
        self.calls = 0

    async def variants(self, query: str, context: str | None, n: int) -> list[str]:
        """Up to ``n`` variants within the timeout; LlmError or asyncio.TimeoutError otherwise."""
        key = text_key("llm-rewrite", json.dumps([query, context or "", n]))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = await asyncio.wait_for(self._ask(query, context, n), self.cfg.timeout_ms / 1000)
        self._cache.put(key, found)
        return found

    async def _ask(self, query: str, context: str | None, n: int) -> list[str]:
        prompt = (self.cfg.prompt or DEFAULT_PROMPT).format(
            n=n, context=f" (the search is about: {context})" if context else ""
        )
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": query}],
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
            **self.cfg.extra_body,
        }
        self.calls += 1
        try:
            resp = await self._client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as e:
            raise LlmError(f"{type(e).__name__}: {e}") from None
        if resp.status_code != 200:
            raise LlmError(f"status {resp.status_code}")
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LlmError("the reply is not a chat completion") from None
        if not isinstance(content, str):
            raise LlmError("the reply has no text content")
        found = parse_variants(content)[:n]
        if not found:
            raise LlmError("the reply holds no variants")
        return found

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()


async def rewrite_with_llm(rewriter: Rewriter, llm: LlmRewriter, query: str, context: str | None) -> Rewrite:
    """The endpoint's variants first, the rules' after them; the rules alone when it fails."""
    by_rules = rewriter.rewrite(query, context)
    cfg = rewriter.cfg
    if not rewriter.rewrites(query):
        return by_rules
    try:
        texts = await llm.variants(query, (context or "").strip() or cfg.context_entity, cfg.max_variants)
    except asyncio.TimeoutError:
        log.warning("query rewriter %s timed out; using the rules", llm.cfg.url)
        return replace(by_rules, notes=("llm:timeout",))
    except LlmError as e:
        log.warning("query rewriter %s failed, using the rules: %s", llm.cfg.url, e)
        return replace(by_rules, notes=("llm:error",))
    written = [Variant(t, ("llm",)) for t in texts]
    return Rewrite(query, rewriter.distinct(query, written + list(by_rules.variants)))
