"""Regex rewrites on RE2: matching is linear in the query's length, whatever the pattern."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

# \1 .. \99 and \g<name> / \g<1> in a replacement; anything else is literal text.
_REF = re.compile(r"\\(\d{1,2})|\\g<(\w+)>")


@dataclass(frozen=True)
class Pattern:
    """A compiled ``match => replace`` rule."""

    source: str
    regex: Any
    parts: tuple[str | int | tuple[str], ...]  # literal text, a group number, or (group name,)

    def sub(self, text: str) -> str:
        """Every match in ``text`` replaced by the template."""
        result: str = self.regex.sub(self._expand(), text)
        return result

    def _expand(self) -> Callable[[Any], str]:
        def expand(m: Any) -> str:
            out = []
            for part in self.parts:
                if isinstance(part, str):
                    out.append(part)
                else:
                    out.append(m.group(part if isinstance(part, int) else part[0]) or "")
            return "".join(out)

        return expand


def compile_pattern(match: str, replace: str, *, case_sensitive: bool = False) -> Pattern:
    """Compile one rule; ValueError with RE2's reason for a pattern it cannot take."""
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False  # RE2 logs to stderr through absl otherwise
    try:
        regex = re2.compile(match, options)
    except re2.error as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"invalid pattern {match!r}: {reason} (patterns use RE2 syntax)") from None
    parts: list[str | int | tuple[str]] = []
    pos = 0
    for m in _REF.finditer(replace):
        if m.start() > pos:
            parts.append(replace[pos : m.start()])
        ref = m.group(1) or m.group(2)
        if ref.isdigit():
            if int(ref) > regex.groups:
                groups = regex.groups
                raise ValueError(f"replacement {replace!r} refers to group {ref}; the pattern has {groups}")
            parts.append(int(ref))
        else:
            if ref not in regex.groupindex:
                raise ValueError(f"replacement {replace!r} refers to unknown group {ref!r}")
            parts.append((ref,))
        pos = m.end()
    if pos < len(replace):
        parts.append(replace[pos:])
    return Pattern(match, regex, tuple(parts))
