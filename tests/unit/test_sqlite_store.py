"""The embedded revocation store: one SQLite file shared by the gateway's workers and the CLI."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.revocation.entries import Kind, Revocation, RevocationError
from gateway.revocation.sqlite_store import SQLiteStore
from gateway.revocation.view import RevocationView
from tests.polling import eventually

NOW = time.time()
LATER = NOW + 3600.0
DIGEST = "0123456789abcdef0123456789abcdef"
SUB = Revocation(Kind.SUB, "user-42", LATER, NOW)
TOKEN = Revocation(Kind.TOKEN, DIGEST, LATER)
PREFIX = Revocation(Kind.PREFIX, "/videos/ep1", LATER, NOW)
GONE = Revocation(Kind.KEY_ID, "k-old", NOW - 1.0, NOW - 100.0)


class CountingView(RevocationView):
    """A view that counts its confirmed syncs: a `follow` loop's iterations."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def mark_synced(self, *, full: bool = False) -> None:
        super().mark_synced(full=full)
        self.syncs += 1


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "revocations.sqlite3"


@asynccontextmanager
async def opened(path: Path, **options: Any) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(path, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def following(store: SQLiteStore, view: RevocationView) -> AsyncIterator[None]:
    task = asyncio.create_task(store.follow(view))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def insert_row(path: Path, kind: Any, value: Any, before: Any, until: Any) -> None:
    """Write a row behind the store's back, as a damaged file or another version might."""
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO revocations (kind, value, before, until, created) VALUES (?, ?, ?, ?, ?)",
            (kind, value, before, until, NOW),
        )
    db.close()


def by_field(entries: list[Revocation]) -> list[Revocation]:
    return sorted(entries, key=lambda e: e.field)


# -- the file ------------------------------------------------------------------------------------


async def test_opening_creates_the_file(db: Path) -> None:
    async with opened(db):
        assert await asyncio.to_thread(db.exists)


async def test_stores_opening_the_same_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Workers starting together, or the CLI racing a starting gateway, on a file not made yet."""
    for attempt in range(40):
        path = tmp_path / f"new-{attempt}.sqlite3"
        stores = [SQLiteStore(path) for _ in range(4)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
        finally:
            for store in stores:
                await store.close()


async def test_an_unusable_path_fails_at_open_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing-directory" / "revocations.sqlite3"
    store = SQLiteStore(path)
    with pytest.raises(RevocationError, match=r"revocation_db .*missing-directory"):
        await store.open()
    await store.close()


async def test_closing_twice_is_harmless(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.close()
    await store.close()


# -- adding, listing, pruning --------------------------------------------------------------------


async def test_an_added_entry_is_listed(db: Path) -> None:
    async with opened(db) as store:
        for entry in (SUB, TOKEN, PREFIX):
            await store.add(entry)
        assert by_field(await store.entries()) == by_field([SUB, TOKEN, PREFIX])


async def test_a_fresh_store_is_empty(db: Path) -> None:
    async with opened(db) as store:
        assert await store.entries() == []


async def test_entries_for_the_same_thing_are_listed_once_as_their_union(db: Path) -> None:
    async with opened(db) as store:
        await store.add(Revocation(Kind.SUB, "u", LATER, NOW - 10))
        await store.add(Revocation(Kind.SUB, "u", LATER - 5, NOW))
        assert await store.entries() == [Revocation(Kind.SUB, "u", LATER, NOW)]


async def test_expired_entries_are_not_listed(db: Path) -> None:
    async with opened(db) as store:
        await store.add(GONE)
        await store.add(SUB)
        assert await store.entries() == [SUB]
        assert await store.entries(now=LATER) == []


async def test_entries_are_kept_across_store_instances(db: Path) -> None:
    async with opened(db) as first:
        await first.add(SUB)
        await first.add(TOKEN)
    async with opened(db) as second:
        assert by_field(await second.entries()) == by_field([SUB, TOKEN])


async def test_prune_deletes_expired_rows_and_counts_them(db: Path) -> None:
    async with opened(db) as store:
        await store.add(GONE)
        await store.add(Revocation(Kind.TOKEN, DIGEST, NOW - 5.0))
        await store.add(SUB)
        assert await store.prune() == 2
        assert await store.prune() == 0
        assert await store.entries() == [SUB]


async def test_prune_at_a_given_time_deletes_rows_whose_until_has_passed(db: Path) -> None:
    async with opened(db) as store:
        await store.add(SUB)
        assert await store.prune(now=LATER - 1) == 0
        assert await store.prune(now=LATER) == 1
        assert await store.entries(now=NOW) == []


INVALID_ROWS = {
    "unknown kind": ("bogus", "x", NOW, LATER),
    "token not a digest": ("token", "NOT-A-DIGEST", None, LATER),
    "scoped without before": ("sub", "user", None, LATER),
    "empty sub": ("sub", "", NOW, LATER),
    "value not text": ("sub", b"user", NOW, LATER),
    "bad key id": ("key_id", "bad key", NOW, LATER),
    "relative prefix": ("prefix", "relative", NOW, LATER),
    "until not a number": ("sub", "user", NOW, "tomorrow"),
    "before not a number": ("sub", "user", "yesterday", LATER),
    "until a blob": ("sub", "user", NOW, b"\x00"),
}


@pytest.mark.parametrize(
    ("kind", "value", "before", "until"), INVALID_ROWS.values(), ids=INVALID_ROWS.keys()
)
async def test_invalid_rows_are_skipped_and_logged(
    db: Path, caplog: pytest.LogCaptureFixture, kind: Any, value: Any, before: Any, until: Any
) -> None:
    async with opened(db) as store:
        await store.add(SUB)
        insert_row(db, kind, value, before, until)
        await store.add(TOKEN)
        with caplog.at_level(logging.ERROR, logger="gateway.revocation"):
            assert by_field(await store.entries()) == by_field([SUB, TOKEN])
    assert "skipping invalid row 2" in caplog.text


# -- following the file --------------------------------------------------------------------------


async def test_follow_loads_every_live_entry_and_marks_the_view_synced(db: Path) -> None:
    async with opened(db, poll_interval=0.001) as store:
        await store.add(SUB)
        await store.add(GONE)
        view = RevocationView()
        async with following(store, view):
            await asyncio.wait_for(view.first_sync.wait(), timeout=5)
            assert view.entries() == [SUB]
            assert store.connected


async def test_follow_picks_up_entries_written_by_another_store_on_the_same_file(
    db: Path,
) -> None:
    async with opened(db, poll_interval=0.001) as gateway, opened(db) as operator:
        view = CountingView()
        async with following(gateway, view):
            await eventually(lambda: view.syncs >= 1)
            await operator.add(TOKEN)
            await eventually(lambda: view.count(Kind.TOKEN) == 1)
            await operator.add(PREFIX)
            await eventually(lambda: view.count(Kind.PREFIX) == 1)
        assert by_field(view.entries()) == by_field([TOKEN, PREFIX])


async def test_follow_merges_a_later_row_for_the_same_thing(db: Path) -> None:
    async with opened(db, poll_interval=0.001) as gateway, opened(db) as operator:
        await operator.add(Revocation(Kind.SUB, "u", LATER - 10, NOW - 10))
        view = CountingView()
        async with following(gateway, view):
            await eventually(lambda: view.syncs >= 1)
            await operator.add(Revocation(Kind.SUB, "u", LATER, NOW))
            await eventually(lambda: view.entries() == [Revocation(Kind.SUB, "u", LATER, NOW)])


async def test_follow_skips_an_invalid_row_and_reports_it_once(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with opened(db, poll_interval=0.001) as store:
        await store.add(SUB)
        insert_row(db, "bogus", "x", NOW, LATER)
        view = CountingView()
        with caplog.at_level(logging.ERROR, logger="gateway.revocation"):
            async with following(store, view):
                await eventually(lambda: view.syncs >= 5)
        assert view.entries() == [SUB]
    reports = [r for r in caplog.records if "invalid row" in r.getMessage()]
    assert len(reports) == 1


async def test_follow_keeps_going_after_an_invalid_row(db: Path) -> None:
    async with opened(db, poll_interval=0.001) as gateway, opened(db) as operator:
        view = CountingView()
        async with following(gateway, view):
            await eventually(lambda: view.syncs >= 1)
            insert_row(db, "token", "bad", None, LATER)
            await operator.add(TOKEN)
            await eventually(lambda: view.count(Kind.TOKEN) == 1)
        assert view.entries() == [TOKEN]


async def test_a_file_that_cannot_be_opened_leaves_the_view_unsynced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "missing" / "r.sqlite3", poll_interval=0.001)
    view = RevocationView()
    with caplog.at_level(logging.ERROR, logger="gateway.revocation"):
        async with following(store, view):
            await eventually(lambda: not store.connected)
            await eventually(lambda: "revocation_db" in caplog.text)
    assert not view.first_sync.is_set()
    await store.close()


async def test_a_follower_reconnects_when_the_file_becomes_usable(tmp_path: Path) -> None:
    directory = tmp_path / "later"
    store = SQLiteStore(directory / "r.sqlite3", poll_interval=0.001)
    view = RevocationView()
    async with following(store, view):
        await eventually(lambda: not store.connected)
        directory.mkdir()
        async with opened(directory / "r.sqlite3") as operator:
            await operator.add(SUB)
        await asyncio.wait_for(view.first_sync.wait(), timeout=5)
        await eventually(lambda: view.entries() == [SUB])
        assert store.connected
    await store.close()


async def test_a_file_from_before_claim_holders_gets_them_and_keeps_its_claims(db: Path) -> None:
    """Claims had no holder before they were leases: the old rows still block (until their
    link expires, as they were written), and new claims are renewable."""
    with sqlite3.connect(db) as old:
        old.execute("CREATE TABLE claims (token_id TEXT PRIMARY KEY, until REAL NOT NULL)")
        old.execute("INSERT INTO claims VALUES (?, ?)", (DIGEST, LATER))
    old.close()

    async with opened(db) as store:
        assert await store.claim_once(DIGEST, LATER) is False
        assert await store.renew(DIGEST, LATER + 1) is False  # nobody's to renew
        assert await store.claim_once("object:new", LATER) is True
        assert await store.renew("object:new", LATER + 1) is True
