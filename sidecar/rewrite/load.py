"""Compile every route's rewrite block once per config load, reading the rules files they name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sidecar.config import Config, ConfigError, format_validation_error
from sidecar.config.rewrite import RewriteConfig, RewriteRules
from sidecar.rewrite.rules import Rewriter

_MERGED_DICTS = ("abbreviations", "replace", "by_language")
_MERGED_LISTS = ("synonyms", "patterns")


def resolve_rules_path(name: str, base_dir: Path | None) -> Path:
    """A rules file relative to the config file's folder, else to the working directory."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    if base_dir is not None and (base_dir / path).exists():
        return base_dir / path
    return path


def rules_paths(config: Config, base_dir: Path | None) -> list[Path]:
    """The rules files the routes name, resolved: the config watcher watches them too."""
    names = {r.rewrite.rules for r in config.routes if r.rewrite is not None and r.rewrite.rules}
    return sorted(resolve_rules_path(n, base_dir) for n in names)


def read_rules(path: Path) -> RewriteRules:
    """A rules file: a YAML mapping of rule keys; ConfigError naming the file and key path."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    try:
        return RewriteRules.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(f"{path}: {format_validation_error(e)}") from None


def merged(cfg: RewriteConfig, base_dir: Path | None) -> RewriteConfig:
    """The inline block over its rules file: maps merged (inline wins), lists joined, inline scalars win."""
    if cfg.rules is None:
        return cfg
    file = read_rules(resolve_rules_path(cfg.rules, base_dir))
    update: dict[str, Any] = {}
    for name in RewriteRules.model_fields:
        mine, theirs = getattr(cfg, name), getattr(file, name)
        if name in _MERGED_DICTS:
            update[name] = {**theirs, **mine}
        elif name in _MERGED_LISTS:
            update[name] = [*theirs, *mine]
        elif name not in cfg.model_fields_set and name in file.model_fields_set:
            update[name] = theirs
    return cfg.model_copy(update=update)


def chinese_converter(mode: str) -> Callable[[str], str] | None:
    """OpenCC's traditional-to-simplified conversion, when asked for; ConfigError without OpenCC."""
    if mode == "keep":
        return None
    try:
        import opencc
    except ImportError:
        raise ConfigError("simplified needs the opencc package: pip install 'rerank-sidecar[zh]'") from None
    convert: Callable[[str], str] = opencc.OpenCC("t2s").convert
    return convert


def compile_rewriters(config: Config, base_dir: Path | None) -> list[Rewriter | None]:
    """One compiled rewriter per route (None where a route does not rewrite)."""
    out: list[Rewriter | None] = []
    for i, route in enumerate(config.routes):
        if route.rewrite is None:
            out.append(None)
            continue
        where = f"routes.{i}.rewrite"
        try:
            cfg = merged(route.rewrite, base_dir)
        except ConfigError as e:
            raise ConfigError(f"{where}.rules: {e}") from None
        try:
            convert = chinese_converter(cfg.chinese)
        except ConfigError as e:
            raise ConfigError(f"{where}.chinese: {e}") from None
        out.append(Rewriter(cfg, convert))
    return out
