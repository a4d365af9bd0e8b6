"""eval's progress where there is no terminal (a CI log, a pipe): log lines with an ETA."""

from __future__ import annotations

import io

from sidecar.eval.prepare import progress


def test_progress_without_a_terminal_is_log_lines_with_an_eta() -> None:
    out = io.StringIO()
    with progress(True, every_s=0.0, stream=out) as task:
        advance = task("baseline", 4)
        for _ in range(4):
            advance(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(line.startswith("eval: baseline ") for line in lines)
    assert "1/4 (25%)" in lines[0] and ", eta " in lines[0]
    assert lines[-1].startswith("eval: baseline 4/4 (100%)") and lines[-1].endswith(" done")
    assert "eta" not in lines[-1]
    quiet = io.StringIO()
    with progress(True, every_s=3600, stream=quiet) as task:
        advance = task("index kb", 1000)
        for _ in range(1000):
            advance(1)
    assert quiet.getvalue().splitlines() == [quiet.getvalue().splitlines()[-1]]  # only the last, done
    assert quiet.getvalue().rstrip().endswith("1000/1000 (100%) 0 s done")
