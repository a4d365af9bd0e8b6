"""Every reason a response or an event can carry is in the documented lists, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from sidecar.vocab import FALLBACK_REASONS, Reason
from tests import docs

README = docs.text()


def _listed(start: str, end: str) -> set[str]:
    section = README[README.index(start) : README.index(end, README.index(start))]
    return set(re.findall(r"`([a-z_0-9-]+)`", section))


def test_the_readme_lists_every_reason() -> None:
    bypass = _listed("Bypass reasons (the request goes to the cluster unchanged)", "Fallback reasons")
    fallback = _listed("Fallback reasons", "If the cluster is unreachable")
    reasons = {r.value for r in Reason if r is not Reason.NONE}
    assert fallback == {r.value for r in FALLBACK_REASONS}
    # the bypass paragraph names a few other things in backticks (headers, values, `_score`)
    assert reasons - {r.value for r in FALLBACK_REASONS} <= bypass
    assert bypass & {"applied", "fallback"} == set()


def test_every_bypass_in_the_code_is_a_reason() -> None:
    root = Path(__file__).resolve().parents[2] / "sidecar"
    code = "\n".join(p.read_text(encoding="utf-8") for p in root.rglob("*.py"))
    assert not re.search(r'Bypass\("', code), "a bypass with a free string instead of a Reason"
    assert not re.search(r'Outcome\("(bypass|fallback|applied)"', code), (
        "an outcome with a free-string status"
    )
