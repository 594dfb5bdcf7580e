"""`gateway revoke` and `gateway revocations list|prune`: the operator's side, against the store
the gateways use (the settings' `redis_url`, else `revocation_db`)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.revocation import Revocation, RevocationStore, from_request
from gateway.revocation.backends import open_store as open_backend
from gateway.settings import LinkRules, Revocations, load_group


def open_store(config: Path | None, *, create: bool = False) -> RevocationStore:
    """The store the gateways use. An embedded store's file must exist already unless
    `create`: a command run from the wrong place must not write a database nobody reads."""
    return open_backend(load_group(Revocations, config).store_url, create=create)


async def revoke(
    config: Path | None, what: str, value: str, before: float | None, *, create: bool = False
) -> str:
    rules = load_group(LinkRules, config)
    store = open_store(config, create=create)
    try:
        entry = from_request(
            what,
            value,
            before=before,
            now=time.time(),
            max_lifetime=rules.max_lifetime,
            skew=rules.clock_skew,
        )
        await store.open()
        await store.add(entry)
    finally:
        await store.close()
    return f"revoked {summary(entry)} (store: {store.name})"


async def list_entries(config: Path | None, as_json: bool) -> str:
    store = open_store(config)
    try:
        await store.open()
        entries = sorted(await store.entries(), key=lambda e: (e.kind.value, e.value))
    finally:
        await store.close()
    if as_json:
        return json.dumps([e.as_dict() for e in entries], indent=2)
    if not entries:
        return "no live revocations"
    return "\n".join(summary(e) for e in entries)


async def prune(config: Path | None) -> str:
    store = open_store(config)
    try:
        await store.open()
        dropped = await store.prune()
    finally:
        await store.close()
    return f"pruned {dropped} expired revocation(s)"


def summary(entry: Revocation) -> str:
    scope = "" if entry.before is None else f", issued up to {_utc(entry.before)}"
    return f"{entry.kind.value} {entry.value}{scope}; kept until {_utc(entry.until)}"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
