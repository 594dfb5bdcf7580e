"""The embedded revocation store: one SQLite file on local disk, for a single node.

Every revocation appends a row with an increasing `seq`; a gateway (each worker process) loads
all live rows at start and then polls for rows past the last `seq` it has seen, so revocations
written by `gateway revoke` or the admin API reach every worker within one poll interval.
SQLite calls run in a thread: the event loop never waits on the disk.

Uploads claim names (a one-time link, a no-overwrite key) in the `claims` table: one row per
name, its primary key the atomic test, with the holder (this store object: one process) and an
expiry that the holder renews while its upload runs, so a dead process's claim lapses. The
multipart uploads a gateway starts are listed in `uploads`, each with a lease in `claims`
(`upload:<upload id>`); one whose lease lapsed was abandoned (`abandoned_uploads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.revocation import UPLOAD_LEASE
from gateway.revocation.entries import Kind, Revocation, RevocationError, checked
from gateway.revocation.view import RevocationView

log = logging.getLogger("gateway.revocation")

T = TypeVar("T")

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
    until    REAL NOT NULL,
    holder   TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    location  TEXT NOT NULL
);
"""
#: A file written before claims had holders gets the column (its old rows: no holder, so
#: nobody renews or releases them; they expire with their link as before).
_HOLDER_COLUMN = "ALTER TABLE claims ADD COLUMN holder TEXT NOT NULL DEFAULT ''"


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
        self.holder = secrets.token_hex(8)  # whose claims these are: renewed and released
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one call at a time from this event loop...
        self._thread_lock = threading.Lock()  # ...and one statement at a time on the connection

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
                columns = {row[1] for row in db.execute("PRAGMA table_info(claims)")}
                if "holder" not in columns:
                    db.execute(_HOLDER_COLUMN)
            except sqlite3.Error as exc:
                raise RevocationError(f"revocation_db {self.path}: {exc}") from None
            self._db = db
        return self._db

    async def _run(self, work: Callable[[], T]) -> T:
        """`work` in a thread, one at a time. The thread lock is held for the whole call even
        when the awaiting task is cancelled (its thread runs on), so `close` never closes
        the connection under a running statement (which can crash the process)."""

        def locked() -> T:
            with self._thread_lock:
                return work()

        async with self._lock:
            return await asyncio.to_thread(locked)

    async def open(self) -> None:
        """Create the file and schema now, so a bad path fails at start-up."""
        await self._run(self._connect)

    async def add(self, entry: Revocation) -> None:
        def write() -> None:
            db = self._connect()
            with db:
                db.execute(
                    "INSERT INTO revocations (kind, value, before, until, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (entry.kind.value, entry.value, entry.before, entry.until, time.time()),
                )

        await self._run(write)

    async def claim_once(self, token_id: str, until: float) -> bool:
        """One row per claimed name: the primary key makes the insert the atomic test, across
        every worker process sharing the file. A lapsed row is anyone's to take."""
        now = time.time()

        def insert() -> bool:
            db = self._connect()
            with db:
                db.execute("DELETE FROM claims WHERE token_id = ? AND until <= ?", (token_id, now))
                cursor = db.execute(
                    "INSERT OR IGNORE INTO claims (token_id, until, holder) VALUES (?, ?, ?)",
                    (token_id, until, self.holder),
                )
                return cursor.rowcount == 1

        return await self._run(insert)

    async def renew(self, token_id: str, until: float) -> bool:
        """Never shortens: a renewal racing a final hold (`until` the link's expiry) is moot.
        A row of ours that lapsed but nobody took is still ours (taking it deletes it)."""

        def update() -> bool:
            db = self._connect()
            with db:
                cursor = db.execute(
                    "UPDATE claims SET until = MAX(until, ?) WHERE token_id = ? AND holder = ?",
                    (until, token_id, self.holder),
                )
                return cursor.rowcount == 1

        return await self._run(update)

    async def release(self, token_id: str) -> None:
        def delete() -> None:
            db = self._connect()
            with db:
                db.execute(
                    "DELETE FROM claims WHERE token_id = ? AND holder = ?", (token_id, self.holder)
                )

        await self._run(delete)

    async def record_upload(self, upload_id: str, location: str, until: float) -> None:
        def insert() -> None:
            db = self._connect()
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO claims (token_id, until, holder) VALUES (?, ?, ?)",
                    (UPLOAD_LEASE + upload_id, until, self.holder),
                )
                db.execute(
                    "INSERT OR REPLACE INTO uploads (upload_id, location) VALUES (?, ?)",
                    (upload_id, location),
                )

        await self._run(insert)

    async def abandoned_uploads(self) -> list[tuple[str, str]]:
        now = time.time()

        def select() -> list[tuple[str, str]]:
            rows = (
                self._connect()
                .execute(
                    "SELECT u.upload_id, u.location FROM uploads AS u "
                    "LEFT JOIN claims AS c ON c.token_id = ? || u.upload_id "
                    "WHERE c.token_id IS NULL OR c.until <= ?",
                    (UPLOAD_LEASE, now),
                )
                .fetchall()
            )
            return [(str(upload_id), str(location)) for upload_id, location in rows]

        return await self._run(select)

    async def forget_upload(self, upload_id: str) -> None:
        def delete() -> None:
            db = self._connect()
            with db:
                db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
                db.execute("DELETE FROM claims WHERE token_id = ?", (UPLOAD_LEASE + upload_id,))

        await self._run(delete)

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

        return await self._run(delete)

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

        return await self._run(select)

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

    async def close(self) -> None:
        def shut() -> None:
            with self._thread_lock:
                if self._db is not None:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.close()
                    self._db = None

        await asyncio.to_thread(shut)


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
