"""The user documentation as tests read it: the README and the pages of docs/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def text() -> str:
    """Every page, the README first."""
    return "\n\n".join(p.read_text(encoding="utf-8") for p in PAGES)
