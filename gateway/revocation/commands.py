"""`gateway revoke` and `gateway revocations list|prune`: the operator's side, against the store
the gateways use (the settings' `redis_url`, else `revocation_db`)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import settings as settings_module
from gateway.revocation import Revocation, RevocationStore, from_request

NEEDED = ("revocation_db", "redis_url", "max_link_lifetime", "clock_skew")


def open_store(config: Path | None) -> tuple[RevocationStore, dict[str, Any]]:
    values = settings_module.load_some(NEEDED, config)
    if values["redis_url"]:
        from gateway.revocation.redis_store import RedisStore

        return RedisStore(values["redis_url"]), values
    from gateway.revocation.sqlite_store import SQLiteStore

    return SQLiteStore(values["revocation_db"]), values


async def revoke(config: Path | None, what: str, value: str, before: float | None) -> str:
    store, values = open_store(config)
    try:
        entry = from_request(
            what,
            value,
            before=before,
            now=time.time(),
            max_lifetime=values["max_link_lifetime"],
            skew=values["clock_skew"],
        )
        await store.open()
        await store.add(entry)
    finally:
        await store.close()
    return f"revoked {describe(entry)} (store: {store.name})"


async def list_entries(config: Path | None, as_json: bool) -> str:
    store, _ = open_store(config)
    try:
        await store.open()
        entries = sorted(await store.entries(), key=lambda e: (e.kind.value, e.value))
    finally:
        await store.close()
    if as_json:
        return json.dumps([e.describe() for e in entries], indent=2)
    if not entries:
        return "no live revocations"
    return "\n".join(describe(e) for e in entries)


async def prune(config: Path | None) -> str:
    store, _ = open_store(config)
    try:
        await store.open()
        dropped = await store.prune()
    finally:
        await store.close()
    return f"pruned {dropped} expired revocation(s)"


def describe(entry: Revocation) -> str:
    scope = "" if entry.before is None else f", issued up to {_utc(entry.before)}"
    return f"{entry.kind.value} {entry.value}{scope}; kept until {_utc(entry.until)}"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
