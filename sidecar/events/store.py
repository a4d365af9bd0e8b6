"""The event store: a bounded ring buffer, a SQLite sink written off the request path, live feeds.

``add`` is called on the event loop and does no I/O: the record goes into the ring buffer
(bounded in count and in bytes), to live subscribers (bounded queues; a slow one loses events,
never blocks a search) and onto the writer thread's queue. The writer batches inserts into
SQLite and keeps the table within ``max_events`` rows and ``max_age_days``. On start the newest
rows are read back, so a restart keeps history. A failing write is logged and reported in
``health``; a batch that cannot be written at all is counted as dropped, and the writer goes
on with the next one.

SQLite runs with a rollback journal, not WAL: WAL maps its ``-shm`` file into memory, and a
full disk or a file truncated under it kills the process with SIGBUS. A data folder removed
under a running sidecar is noticed (the file's inode) and the file made again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.events.event import SearchEvent
from sidecar.events.ubi import Click
from sidecar.jsontext import json_text

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    idx TEXT,
    status TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS clicks (
    time REAL NOT NULL,
    query_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    action TEXT NOT NULL,
    identity TEXT
);
CREATE INDEX IF NOT EXISTS clicks_query ON clicks (query_id);
"""


@dataclass(frozen=True)
class _StoredClick:
    click: Click
    identity: str | None


BEHIND = 10_000  # events queued for the writer past which health says it is behind


def approx_bytes(event: SearchEvent) -> int:
    """About what an event takes in memory (its texts and a fixed cost per hit)."""
    texts = len(event.query or "") + sum(len(v.text) for v in event.variants)
    texts += sum(len(b.title) for b in event.baseline) + sum(len(v) for v in event.headers.values())
    return 2 * texts + 600 + 250 * (len(event.baseline) + len(event.final))


class EventStore:
    """Ring buffer in memory, SQLite on disk (optional), SSE subscribers."""

    def __init__(
        self,
        path: str | None,
        *,
        buffer: int = 2000,
        max_events: int = 100_000,
        max_age_days: float = 30.0,
        sink: Callable[[list[dict[str, Any]]], None] | None = None,
        buffer_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.path = path
        self.sink = sink
        self.sink_error: str | None = None
        self.ring: deque[SearchEvent] = deque()
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        self._sizes: deque[int] = deque()
        self._ring_bytes = 0
        self.dropped = 0  # events no write could take (a batch that failed as a whole)
        self.reopened = 0  # times the file was found gone and made again
        self._inode: int | None = None
        self.max_events = max_events
        self.max_age_s = max_age_days * 86400
        self.subscribers: set[asyncio.Queue[SearchEvent]] = set()
        self.write_error: str | None = None
        self.written = 0
        self._queue: queue.SimpleQueue[SearchEvent | _StoredClick | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Read the newest stored events back and start the writer."""
        if self.path is None and self.sink is None:
            return
        self._thread = threading.Thread(target=self._writer, name="event-writer", daemon=True)
        self._thread.start()
        if self.path is None:
            return
        try:
            with closing(self._connect()) as db:
                rows = db.execute(
                    "SELECT body FROM events ORDER BY time DESC LIMIT ?", (self.buffer,)
                ).fetchall()
            for (body,) in reversed(rows):
                self._remember(SearchEvent.model_validate_json(body))
        except (sqlite3.Error, OSError) as e:
            self.write_error = f"cannot open {self.path}: {e}"
            log.error("event store: %s", self.write_error)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5)
        db.execute("PRAGMA journal_mode=DELETE")  # no WAL: no memory-mapped -shm file (SIGBUS)
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(clicks)")}
        if "identity" not in columns:  # a file of an earlier version
            db.execute("ALTER TABLE clicks ADD COLUMN identity TEXT")
        return db

    @property
    def queued(self) -> int:
        """Events and clicks waiting for the writer."""
        return self._queue.qsize()

    @property
    def writer_stopped(self) -> bool:
        """Whether the writer thread was started and is no longer running."""
        return self._thread is not None and not self._thread.is_alive()

    def state(self) -> str | None:
        """Why health is degraded on the store's account, or None."""
        if self.writer_stopped:
            return "the event writer has stopped"
        if self.queued > BEHIND:
            return f"the event writer is behind: {self.queued} events queued"
        return self.write_error or self.sink_error

    def _remember(self, event: SearchEvent) -> None:
        size = approx_bytes(event)
        self.ring.append(event)
        self._sizes.append(size)
        self._ring_bytes += size
        while len(self.ring) > self.buffer or (self._ring_bytes > self.buffer_bytes and len(self.ring) > 1):
            self.ring.popleft()
            self._ring_bytes -= self._sizes.popleft()

    def add(self, event: SearchEvent) -> None:
        """Record one event: memory and subscribers now, disk soon."""
        self._remember(event)
        for q in list(self.subscribers):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                pass  # a slow reader misses events; searches never wait for it
        if self._thread is not None:
            self._queue.put(event)

    def add_click(self, click: Click, identity: str | None = None) -> None:
        """Keep a click (UBI event) on disk beside the events, for ``rerank-sidecar judgments``
        and a restart's replay (``identity``: the hash of the searcher it counted for)."""
        if self._thread is not None and self.path is not None:
            self._queue.put(_StoredClick(click, identity))

    def subscribe(self, size: int = 1000) -> asyncio.Queue[SearchEvent]:
        """A live feed of new events."""
        q: asyncio.Queue[SearchEvent] = asyncio.Queue(size)
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[SearchEvent]) -> None:
        """End a live feed."""
        self.subscribers.discard(q)

    def _batches(self) -> Iterator[list[SearchEvent | _StoredClick] | None]:
        while True:
            first = self._queue.get()
            if first is None:
                yield None
                return
            batch: list[SearchEvent | _StoredClick] = [first]
            while len(batch) < 500:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    yield batch
                    yield None
                    return
                batch.append(item)
            yield batch

    def _writer(self) -> None:
        db: sqlite3.Connection | None = None
        last_prune = 0.0
        for mixed in self._batches():
            if mixed is None:
                break
            try:
                db, last_prune = self._write(db, mixed, last_prune)
            except Exception:  # never the end of the writer: this batch is lost, the next one is not
                self.dropped += len(mixed)
                log.exception("event store: a batch of %d events could not be written: dropped", len(mixed))
                if db is not None:
                    db.close()
                db = None
        if db is not None:
            self._prune(db)
            db.close()

    def _moved(self) -> bool:
        """Whether the file is no longer the one opened (deleted, or its folder removed)."""
        assert self.path is not None
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    def _write(
        self, db: sqlite3.Connection | None, mixed: list[SearchEvent | _StoredClick], last_prune: float
    ) -> tuple[sqlite3.Connection | None, float]:
        batch = [e for e in mixed if isinstance(e, SearchEvent)]
        found = [
            (c.click.time, c.click.query_id, c.click.object_id, c.click.action, c.identity)
            for c in mixed
            if isinstance(c, _StoredClick)
        ]
        if self.sink is not None and batch:
            self._send(batch)
        if self.path is None:
            return db, last_prune
        try:
            if db is not None and self._moved():
                log.warning("event store: %s was removed while in use: made again", self.path)
                self.reopened += 1
                db.close()
                db = None
            if db is None:
                db = self._connect()
                self._inode = os.stat(self.path).st_ino
            rows = [(e.id, e.time, e.index, e.status.value, json_text(e.to_json())) for e in batch]
            with db:
                db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)", rows)
                db.executemany("INSERT INTO clicks VALUES (?, ?, ?, ?, ?)", found)
            self.written += len(rows)
            if time.monotonic() - last_prune > 5:
                self._prune(db)
                last_prune = time.monotonic()
            if self.write_error:
                log.info("event store: writing to %s again", self.path)
            self.write_error = None
        except (sqlite3.Error, OSError) as e:
            self.write_error = f"cannot write {self.path}: {e}"
            self.dropped += len(batch)
            log.error("event store: %s (%d events not stored)", self.write_error, len(batch))
            if db is not None:
                db.close()
            db = None
        return db, last_prune

    def _send(self, batch: list[SearchEvent]) -> None:
        assert self.sink is not None
        try:
            self.sink([e.to_json() for e in batch])
            self.sink_error = None
        except Exception as e:
            self.sink_error = str(e)
            log.error("event sink: %s (%d events not sent)", e, len(batch))

    def _prune(self, db: sqlite3.Connection) -> None:
        with db:
            db.execute("DELETE FROM events WHERE time < ?", (time.time() - self.max_age_s,))
            db.execute("DELETE FROM clicks WHERE time < ?", (time.time() - self.max_age_s,))
            db.execute(
                "DELETE FROM events WHERE time <= "
                "(SELECT time FROM events ORDER BY time DESC LIMIT 1 OFFSET ?)",
                (self.max_events,),
            )
            # clicks too are kept within max_events rows: a flood of them cannot fill the disk
            db.execute(
                "DELETE FROM clicks WHERE rowid <= "
                "(SELECT rowid FROM clicks ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                (self.max_events,),
            )

    def query(
        self,
        *,
        limit: int = 50,
        before: float | None = None,
        index: str | None = None,
        status: str | None = None,
    ) -> list[SearchEvent]:
        """Newest first, from memory, then from disk for what memory no longer holds."""

        def keep(e: SearchEvent) -> bool:
            return (
                (before is None or e.time < before)
                and (index is None or e.index == index)
                and (status is None or e.status.value == status)
            )

        out = [e for e in reversed(self.ring) if keep(e)][:limit]
        if len(out) < limit and self.path is not None and self.write_error is None:
            oldest = out[-1].time if out else before
            if not out and self.ring and before is None:
                oldest = self.ring[0].time
            out += self._query_disk(limit - len(out), oldest, index, status)
        return out

    def _query_disk(
        self, limit: int, before: float | None, index: str | None, status: str | None
    ) -> list[SearchEvent]:
        sql = "SELECT body FROM events WHERE 1=1"
        args: list[float | str] = []
        if before is not None:
            sql += " AND time < ?"
            args.append(before)
        if index is not None:
            sql += " AND idx = ?"
            args.append(index)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY time DESC LIMIT ?"
        args.append(limit)
        try:
            with closing(self._connect()) as db:
                return [SearchEvent.model_validate_json(b) for (b,) in db.execute(sql, args).fetchall()]
        except (sqlite3.Error, OSError) as e:
            log.warning("event store: cannot read %s: %s", self.path, e)
            return []

    def experiment_history(
        self, since: float
    ) -> tuple[list[SearchEvent], list[tuple[str, str, float, str | None]]]:
        """The stored searches an experiment served since ``since`` (oldest first) and the
        clicks (query_id, object_id, time, identity hash) recorded since then: what a restart
        replays."""
        if self.path is None or not Path(self.path).exists():
            return [], []
        try:
            with closing(self._connect()) as db:
                rows = db.execute(
                    "SELECT body FROM events WHERE time >= ? AND body LIKE '%\"experiment\"%' ORDER BY time",
                    (since,),
                ).fetchall()
                clicks = db.execute(
                    "SELECT query_id, object_id, time, identity FROM clicks WHERE time >= ? ORDER BY time",
                    (since,),
                ).fetchall()
        except (sqlite3.Error, OSError) as e:
            log.warning("event store: cannot read experiments from %s: %s", self.path, e)
            return [], []
        events = [SearchEvent.model_validate_json(b) for (b,) in rows]
        return [e for e in events if e.experiment is not None], [(q, o, t, i) for q, o, t, i in clicks]

    def get(self, event_id: str) -> SearchEvent | None:
        """One event by id."""
        for e in self.ring:
            if e.id == event_id:
                return e
        if self.path is None:
            return None
        try:
            with closing(self._connect()) as db:
                row = db.execute("SELECT body FROM events WHERE id = ?", (event_id,)).fetchone()
        except (sqlite3.Error, OSError):
            return None
        return SearchEvent.model_validate_json(row[0]) if row else None
