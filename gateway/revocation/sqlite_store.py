"""The embedded revocation store: one SQLite file on local disk, for a single node.

Every revocation appends a row with an increasing `seq`; a gateway (each worker process) loads
all live rows at start and then polls for rows past the last `seq` it has seen, so revocations
written by `gateway revoke` or the admin API reach every worker within one poll interval.
SQLite calls run in a thread: the event loop never waits on the disk. One-time upload links are
claimed in the `claims` table (one row per link, its primary key the atomic test).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.revocation.entries import Kind, Revocation, RevocationError, checked
from gateway.revocation.view import RevocationView

T = TypeVar("T")

log = logging.getLogger("gateway.revocation")

POLL_INTERVAL = 0.5
BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revocations (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    value   TEXT NOT NULL,
    before  REAL,
    until   REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS revocations_until ON revocations (until);
CREATE TABLE IF NOT EXISTS claims (
    token_id TEXT PRIMARY KEY,
    until    REAL NOT NULL
);
"""


class SQLiteStore:
    name = "sqlite"

    resyncs = 0  # the file is always there: nothing to resync from

    def __init__(
        self, path: Path, *, poll_interval: float = POLL_INTERVAL, create: bool = True
    ) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self.create = create
        self.connected = True
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.create and not self.path.exists():
                raise RevocationError(
                    f"revocation_db {self.path}: does not exist (no gateway has used it); "
                    "check GATEWAY_REVOCATION_DB, or pass --create to start a new one"
                )
            try:
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, check_same_thread=False)
                _use_wal(db)
                db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise RevocationError(f"revocation_db {self.path}: {exc}") from None
            self._db = db
        return self._db

    async def open(self) -> None:
        """Create the file and schema now, so a bad path fails at start-up."""
        await asyncio.to_thread(self._connect)

    async def add(self, entry: Revocation) -> None:
        def write() -> None:
            db = self._connect()
            with db:
                db.execute(
                    "INSERT INTO revocations (kind, value, before, until, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (entry.kind.value, entry.value, entry.before, entry.until, time.time()),
                )

        await self._locked(write)

    async def claim_once(self, token_id: str, until: float) -> bool:
        """One row per claimed link: the primary key makes the insert the atomic test, across
        every worker process sharing the file."""
        now = time.time()

        def insert() -> bool:
            db = self._connect()
            with db:
                db.execute("DELETE FROM claims WHERE token_id = ? AND until <= ?", (token_id, now))
                cursor = db.execute(
                    "INSERT OR IGNORE INTO claims (token_id, until) VALUES (?, ?)",
                    (token_id, until),
                )
                return cursor.rowcount == 1

        return await self._locked(insert)

    async def release(self, token_id: str) -> None:
        def delete() -> None:
            db = self._connect()
            with db:
                db.execute("DELETE FROM claims WHERE token_id = ?", (token_id,))

        await self._locked(delete)

    async def entries(self, now: float | None = None) -> list[Revocation]:
        _, rows = await self._select_since(0, time.time() if now is None else now)
        view = RevocationView()
        view.merge(rows)
        return view.entries()

    async def prune(self, now: float | None = None) -> int:
        current = time.time() if now is None else now

        def delete() -> int:
            db = self._connect()
            with db:
                db.execute("DELETE FROM claims WHERE until <= ?", (current,))
                return db.execute("DELETE FROM revocations WHERE until <= ?", (current,)).rowcount

        return await self._locked(delete)

    async def _select_since(self, seq: int, now: float) -> tuple[int, list[Revocation]]:
        """The valid live rows after `seq`, and the last `seq` read (valid or not), so that a
        follower moves past an invalid row instead of reading and reporting it every poll."""

        def select() -> tuple[int, list[Revocation]]:
            db = self._connect()
            rows = db.execute(
                "SELECT seq, kind, value, before, until FROM revocations "
                "WHERE seq > ? AND until > ? ORDER BY seq",
                (seq, now),
            ).fetchall()
            last, out = seq, []
            for row_seq, kind, value, before, until in rows:
                last = row_seq
                try:
                    out.append(checked(Kind(kind), value, until, before))
                except (RevocationError, ValueError) as exc:
                    log.error("revocation_db: skipping invalid row %d: %s", row_seq, exc)
            return last, out

        return await self._locked(select)

    async def follow(self, view: RevocationView) -> None:
        """Keep `view` in step with the file until cancelled."""
        last = 0
        while True:
            try:
                last, rows = await self._select_since(last, time.time())
            except (sqlite3.Error, RevocationError) as exc:
                self.connected = False
                log.error("revocation_db %s: %s", self.path, exc)
            else:
                self.connected = True
                for entry in rows:
                    view.apply(entry)
                view.mark_synced()
            await asyncio.sleep(self.poll_interval)

    async def _locked(self, work: Callable[[], T]) -> T:
        """`work` in a thread, holding the lock until the thread is done, even when the caller
        is cancelled: the connection must not be closed under a query still running."""
        async with self._lock:
            running = asyncio.ensure_future(asyncio.to_thread(work))
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                with contextlib.suppress(BaseException):
                    await running
                raise

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


def _use_wal(db: sqlite3.Connection) -> None:
    """Switching a new file to WAL fails at once with SQLITE_BUSY, without waiting on the busy
    timeout, while another connection (a worker, the CLI) is setting up the same new file:
    retry until the timeout instead of failing the gateway's start or the operator's command.
    Runs in a worker thread, never on the event loop."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def from_url(url: str, *, create: bool = True) -> SQLiteStore:
    """`sqlite:///absolute/path` (the registry's form of `revocation_db`)."""
    return SQLiteStore(Path(url.partition("://")[2]), create=create)
