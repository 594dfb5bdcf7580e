"""The embedded limit store: tables in the revocation store's SQLite file (one node).

Every call is one `BEGIN IMMEDIATE` transaction, so the workers of one node (processes sharing
the file) judge and count atomically, as Redis's scripts do for a fleet. Rows carry the link's
expiry and are dropped with it. Leases and the Rate schedule run on this node's clock. A
subject's leases (SubjectStreams) are rows of `limit_streams` under its `subject_key`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from gateway.limits import OK, Ask, LimitStoreError, Usage

T = TypeVar("T")
BUSY_TIMEOUT: Final = 5.0
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS limit_counts (
    link TEXT PRIMARY KEY, uses INTEGER NOT NULL, served INTEGER NOT NULL, expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS limit_streams (
    link TEXT NOT NULL, client TEXT NOT NULL, until REAL NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (link, client)
);
CREATE TABLE IF NOT EXISTS limit_schedule (
    link TEXT PRIMARY KEY, next REAL NOT NULL, expires REAL NOT NULL
);
"""


class SQLiteLimitStore:
    name = "sqlite"

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = path, clock
        self._db: sqlite3.Connection | None = None
        self._thread_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                db = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
                )
                db.executescript(_SCHEMA)
                _sweep(db, self.clock())
            except sqlite3.Error as exc:
                raise LimitStoreError(f"revocation_db {self.path}: {exc}") from None
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection, float], T]) -> T:
        """`work` in one immediate transaction, in a thread (never on the event loop)."""

        def transaction() -> T:
            with self._thread_lock:
                db = self._connect()
                try:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(db, self.clock())
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise LimitStoreError(f"revocation_db {self.path}: {exc}") from None
                return result

        return await asyncio.to_thread(transaction)

    async def open(self) -> None:
        """Nothing yet: the file is opened by the first limited link, so a gateway that never
        serves one holds nothing more than its revocation store (expired rows go then)."""

    async def close(self) -> None:
        def shut() -> None:
            with self._thread_lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(shut)

    async def admit(self, link: str, ask: Ask) -> str:
        owner = ask.streams_of or link

        def work(db: sqlite3.Connection, now: float) -> str:
            if ask.max_streams:
                db.execute("DELETE FROM limit_streams WHERE link = ? AND until <= ?", (owner, now))
                held = {
                    c
                    for (c,) in db.execute(
                        "SELECT client FROM limit_streams WHERE link = ?", (owner,)
                    )
                }
                if ask.client not in held and len(held) >= ask.max_streams:
                    return "too_many_streams"
            row = db.execute(
                "SELECT uses, served FROM limit_counts WHERE link = ?", (link,)
            ).fetchone()
            uses, served = row if row is not None else (0, 0)
            if ask.max_uses and ask.use and uses >= ask.max_uses:
                return "uses_exhausted"
            if ask.max_served and served + ask.reserve > ask.max_served:
                return "bytes_exhausted"
            if ask.max_streams:
                db.execute(
                    "INSERT INTO limit_streams VALUES (?, ?, ?, ?) ON CONFLICT (link, client) "
                    "DO UPDATE SET until = max(until, excluded.until), "
                    "expires = max(expires, excluded.expires)",
                    (owner, ask.client, now + ask.lease, max(ask.expires, now + ask.lease)),
                )
            counted = 1 if ask.max_uses and ask.use else 0
            reserved = ask.reserve if ask.max_served else 0
            if counted or reserved:
                db.execute(
                    "INSERT INTO limit_counts VALUES (?, ?, ?, ?) ON CONFLICT (link) DO UPDATE "
                    "SET uses = uses + excluded.uses, served = served + excluded.served",
                    (link, counted, reserved, ask.expires),
                )
            return OK

        return await self._run(work)

    async def renew(self, link: str, client: str, lease: float, expires: float) -> None:
        await self._run(
            lambda db, now: db.execute(
                "UPDATE limit_streams SET until = max(until, ?), expires = max(expires, ?) "
                "WHERE link = ? AND client = ?",
                (now + lease, now + lease, link, client),
            )
        )

    async def refund(self, link: str, unsent: int, uses: int = 0) -> None:
        await self._run(
            lambda db, now: db.execute(
                "UPDATE limit_counts SET served = max(0, served - ?), uses = max(0, uses - ?) "
                "WHERE link = ?",
                (unsent, uses, link),
            )
        )

    async def pace(self, link: str, rate: int, count: int, expires: float) -> float:
        def work(db: sqlite3.Connection, now: float) -> float:
            row = db.execute("SELECT next FROM limit_schedule WHERE link = ?", (link,)).fetchone()
            start = max(now, row[0] if row is not None else now)
            db.execute(
                "INSERT INTO limit_schedule VALUES (?, ?, ?) ON CONFLICT (link) "
                "DO UPDATE SET next = excluded.next",
                (link, start + count / rate, expires),
            )
            return float(start - now)

        return await self._run(work)

    async def usage(self, link: str) -> Usage:
        def work(db: sqlite3.Connection, now: float) -> Usage:
            row = db.execute(
                "SELECT uses, served FROM limit_counts WHERE link = ?", (link,)
            ).fetchone()
            streams = dict(
                db.execute(
                    "SELECT client, until FROM limit_streams WHERE link = ? AND until > ?",
                    (link, now),
                ).fetchall()
            )
            uses, served = row if row is not None else (0, 0)
            return Usage(uses=uses, served=served, streams=streams)

        return await self._run(work)

    async def reset(self, link: str) -> None:
        def work(db: sqlite3.Connection, now: float) -> None:
            for table in ("limit_counts", "limit_streams", "limit_schedule"):
                db.execute(f"DELETE FROM {table} WHERE link = ?", (link,))  # noqa: S608

        await self._run(work)


def _sweep(db: sqlite3.Connection, now: float) -> None:
    """Drop what belongs to expired links (their counters can never matter again)."""
    for table in ("limit_counts", "limit_streams", "limit_schedule"):
        db.execute(f"DELETE FROM {table} WHERE expires <= ?", (now,))  # noqa: S608


def from_url(url: str) -> SQLiteLimitStore:
    """`sqlite:///absolute/path`: the revocation store's file."""
    return SQLiteLimitStore(Path(url.partition("://")[2]))
