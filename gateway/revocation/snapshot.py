"""A local copy of the revocation view, so that a gateway started while Redis is down enforces
what the fleet had revoked, rather than nothing.

Only for a store on another host: the embedded SQLite file is always there, its own snapshot.
The file is one JSON object: the format, the store it copies, when that view was last in sync,
the entries (one `[kind, value, until, before]` per line) and their count: it is read in one
parse, and an incomplete file never reads as a shorter list. It is replaced atomically (a temporary
file in the same directory, fsync, rename, fsync of the directory): a crash at any point leaves
the previous snapshot whole.

A snapshot is refused (`SnapshotError`, and the gateway starts as if there were none) when it
is not whole, copies another store (a different Redis URL: its entries would be written back
into this one), or is older than `max_link_lifetime`: by then every entry it holds has expired,
and every link still valid was issued after it was written, so it can refuse none of them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.revocation.entries import Kind, Revocation, RevocationError, checked

FORMAT: Final = "edge-gateway revocation snapshot"
VERSION: Final = 1


class SnapshotError(Exception):
    """Why a snapshot cannot be used; the message names no secret (the store URL is redacted)."""


class NoSnapshot(SnapshotError):
    """There is no snapshot yet (a first start, or a new state directory)."""


@dataclass(frozen=True)
class Snapshot:
    store: str  # the store it copies, as `redact_url` writes it
    synced_at: float  # unix seconds: when the view it copies was last confirmed in sync
    entries: list[Revocation]  # the entries still live when read


def write(path: Path, *, store: str, synced_at: float, entries: Iterable[Revocation]) -> int:
    """Replace the snapshot at `path` with `entries`; returns how many. Blocking (run it in a
    thread). The file is created 0600: it lists revoked subjects and paths."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            header = {"format": FORMAT, "version": VERSION, "store": store, "synced_at": synced_at}
            out.write(json.dumps(header)[:-1] + ', "entries": [')
            count = 0
            for entry in entries:
                row = [entry.kind.value, entry.value, entry.until, entry.before]
                out.write(("\n" if count == 0 else ",\n") + json.dumps(row))
                count += 1
            out.write(f'\n], "count": {count}}}\n')
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)
    return count


def read(path: Path, *, store: str, now: float, max_age: float) -> Snapshot:
    """The snapshot at `path`, without the entries expired by `now`; `SnapshotError` says why
    it cannot be used. Blocking (run it in a thread)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NoSnapshot(f"{path}: no snapshot yet") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse(data, store=store, now=now, max_age=max_age)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None


def parse(data: bytes, *, store: str, now: float, max_age: float) -> Snapshot:
    """A snapshot file's bytes, judged whole (see `read`)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise SnapshotError("incomplete or not JSON") from None
    if not isinstance(document, dict):
        raise SnapshotError("not a JSON object")
    if document.get("format") != FORMAT or document.get("version") != VERSION:
        raise SnapshotError("not a revocation snapshot of this version")
    if document.get("store") != store:
        raise SnapshotError(f"copies another store ({document.get('store')!r}, not {store!r})")
    synced_at = document.get("synced_at")
    if isinstance(synced_at, bool) or not isinstance(synced_at, int | float):
        raise SnapshotError("synced_at must be unix seconds")
    if not math.isfinite(synced_at):
        raise SnapshotError("synced_at must be unix seconds")
    if now - synced_at > max_age:
        raise SnapshotError(
            f"last in sync {now - synced_at:.0f}s ago, longer than max_link_lifetime "
            f"({max_age:.0f}s): everything it revokes has expired"
        )
    rows = document.get("entries")
    if not isinstance(rows, list):
        raise SnapshotError("entries must be a list")
    count = document.get("count")
    if type(count) is not int or count != len(rows):
        raise SnapshotError("incomplete (its count does not match its entries)")
    entries = []
    for number, row in enumerate(rows):
        entry = _entry(row, number)
        if entry.until > now:
            entries.append(entry)
    return Snapshot(store, float(synced_at), entries)


def _entry(row: Any, number: int) -> Revocation:
    """One `[kind, value, until, before]`, validated like any untrusted entry."""
    if not isinstance(row, list) or len(row) != 4:
        raise SnapshotError(f"entry {number}: not [kind, value, until, before]")
    try:
        return checked(Kind(row[0]), row[1], row[2], row[3])
    except (RevocationError, ValueError) as exc:
        raise SnapshotError(f"entry {number}: {exc}") from None


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable: without it, a power cut can bring back the old name's file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
