"""The embedded cluster (osmem-server) that the demo, ``eval --embedded``, the tests and the
benchmarks start, and its quiet stop: SIGTERM first (it exits at once and says nothing), the
package's own close (stdin closed, then a kill) only where that did not end it."""

from __future__ import annotations

import contextlib
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from osmem_server import OsmemServer


def stop_embedded(cluster: OsmemServer, grace: float = 5.0) -> None:
    """Stop it without the "exiting: stdin closed" line on stderr."""
    process: subprocess.Popen[str] = cluster.process
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    cluster.close(grace)
