"""Mixed load with an upstream outage in the middle, bounded (the harness of bench/load.py):
no errors outside the outage, OpenSearch-shaped 502/504 during it, recovery by itself, and
every acknowledged write stored exactly once."""

from __future__ import annotations

from osmem_server import OsmemServer

from bench.load import Relay, check_writes, run_load, summarize
from tests.conftest import BrokenBackend, RunningSidecar, SlowBackend, sidecar_config

OUTAGE = (2.5, 4.5)


async def test_mixed_load_through_an_upstream_outage(osmem: OsmemServer) -> None:
    host, port = osmem.url.removeprefix("http://").split(":")
    relay = Relay(host, int(port))
    await relay.start()
    running = RunningSidecar(
        sidecar_config(relay.url), backends={"slow": SlowBackend(), "broken": BrokenBackend()}
    )
    try:
        report = await run_load(running.url, 8.0, 8, outage=OUTAGE, relay=relay, write_index="loadw-test")
    finally:
        running.close()
        await relay.stop()
    summary = summarize(report, OUTAGE)
    assert summary["errors_outside_outage"] == []
    assert summary["during_outage"], "the outage was not seen"
    for seen in summary["during_outage"]:
        status, etype = seen.split(" ")
        assert status in ("502", "504") and etype in (
            "upstream_unavailable_exception",
            "timeout_exception",
        ), seen
    assert summary["recovered_after_s"] is not None and summary["recovered_after_s"] < 1.5
    assert all(k["requests"] > 0 for k in summary["kinds"].values()) and len(summary["kinds"]) == 4
    writes = check_writes(osmem.url, report, "loadw-test")
    assert writes["acknowledged"] > 0 and writes["acknowledged_missing"] == 0 and writes["duplicated"] == 0
