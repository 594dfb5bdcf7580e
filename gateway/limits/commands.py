"""What operators see of usage limits, and how they reset them: `gateway limits show|reset` and
the admin API's `/admin/limits` (gateway/admin_api.py), over the store the gateways count in.

A link is named by its URL (then its limits are known and shown too) or by its token id (as
the access log gives it); a subject's shared streams (SubjectStreams) by the subject. Resetting
a link forgets its uses, bytes served, stream leases and Rate schedule: an exhausted link is
usable again, up to its limits.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from gateway.limits import LimitStore, LimitStoreError, Usage, subject_key
from gateway.limits.backends import open_store as open_backend
from gateway.limits.sqlite_store import SQLiteLimitStore
from gateway.settings import Revocations, load_group
from signer import Rejected, token_id
from signer.format import Claims, parse_link
from signer.schemes import Ambiguous, detect

TOKEN_ID: Final = re.compile(r"[0-9a-f]{32}")


class TargetError(ValueError):
    """Not a link, token id or subject that limits can be looked up by."""


@dataclass(frozen=True)
class Target:
    """Whose counts: a link (by token id, with its claims when a URL named it), and the subject
    whose streams it counts under SubjectStreams; or a subject alone (`link` None)."""

    link: str | None
    claims: Claims | None = None
    subject: str | None = None

    @property
    def streams_key(self) -> str:
        """Where its leases are kept."""
        if self.subject is not None:
            return subject_key(self.subject)
        assert self.link is not None
        return self.link

    def store_keys(self) -> list[str]:
        """Every key a reset forgets."""
        found = [] if self.link is None else [self.link]
        return found + ([] if self.subject is None else [subject_key(self.subject)])


def target(text: str | None = None, *, sub: str | None = None) -> Target:
    """The target named by a URL or a token id (`text`), or by a subject (`sub`)."""
    if (text is None) == (sub is None):
        raise TargetError("give a URL or a token id, or a subject")
    if sub is not None:
        if not sub:
            raise TargetError("sub: must not be empty")
        return Target(None, subject=sub)
    assert text is not None
    if TOKEN_ID.fullmatch(text):
        return Target(text)
    parts = urlsplit(text)
    raw_path = parts.path or "/"
    try:
        if detect(raw_path, parts.query) is not None:
            raise TargetError("url: another scheme's link carries no usage limits")
        link = parse_link(raw_path, parts.query)
    except Ambiguous:
        raise TargetError("url: carries the links of more than one scheme") from None
    except Rejected as exc:
        raise TargetError(
            f"not a token id (32 hex digits) nor a signed link ({exc.reason.value})"
        ) from None
    claims = link.claims
    subject = claims.sub if claims.subject_streams else None
    return Target(token_id(link.signature), claims, subject)


@dataclass(frozen=True)
class Shown:
    """A target's usage as one store saw it at `now`."""

    target: Target
    usage: Usage
    store: str
    now: float

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.target.link is not None:
            found |= {"token_id": self.target.link}
        if self.target.subject is not None:
            found |= {"subject": self.target.subject}
        if self.target.link is not None:
            found |= {"uses": self.usage.uses, "served": self.usage.served}
        found["streams"] = [
            {"client": client, "until": round(until, 3)}
            for client, until in sorted(self.usage.streams.items())
        ]
        claims = self.target.claims
        if claims is not None:
            found["limits"] = {
                name: value
                for name, value in (
                    ("max_streams", claims.max_streams),
                    ("max_uses", claims.max_uses),
                    ("max_served", claims.max_served),
                    ("rate", claims.rate),
                )
                if value is not None
            }
        return found

    def text(self) -> str:
        wanted, usage = self.target, self.usage
        claims = wanted.claims

        def of(field: str) -> str:
            value = None if claims is None else getattr(claims, field)
            return "" if value is None else f" of {value}"

        if wanted.link is not None:
            lines = [
                f"link {wanted.link} (store: {self.store})",
                f"  uses      {usage.uses}{of('max_uses')}",
                f"  served    {usage.served}{of('max_served')} bytes",
            ]
        else:
            lines = [f"subject {wanted.subject!r} (store: {self.store})"]
        shared = wanted.link is not None and wanted.subject is not None
        whose = f" (of subject {wanted.subject!r})" if shared else ""
        lines.append(f"  streams   {len(usage.streams)}{of('max_streams')}{whose}")
        for client, until in sorted(usage.streams.items()):
            lines.append(f"    {client}  lease until {_utc(until)} (in {until - self.now:.0f} s)")
        if claims is not None and claims.rate is not None:
            lines.append(f"  rate      {claims.rate} bytes/s")
        return "\n".join(lines)


async def show(store: LimitStore, wanted: Target) -> Shown:
    """What `wanted` has used: a link's counts, and the leases where its streams are kept."""
    now = time.time()
    streams = await store.usage(wanted.streams_key)
    if wanted.link is None or wanted.subject is None:
        counts = streams
    else:
        counts = await store.usage(wanted.link)
    return Shown(wanted, Usage(counts.uses, counts.served, streams.streams), store.name, now)


async def reset(store: LimitStore, wanted: Target) -> None:
    """Forget what `wanted` used; for a URL with SubjectStreams, its subject's leases too."""
    for key in wanted.store_keys():
        await store.reset(key)


def describe_reset(wanted: Target, store: str) -> str:
    named = []
    if wanted.link is not None:
        named.append(f"link {wanted.link} (uses, bytes served, streams, rate schedule)")
    if wanted.subject is not None:
        named.append(f"the streams of subject {wanted.subject!r}")
    return f"reset {' and '.join(named)} (store: {store})"


def open_store(config: Path | None) -> LimitStore:
    """The store the gateways count in (GATEWAY_REDIS_URL, else the revocation_db file). An
    embedded store's file must exist: a command run from the wrong place must not make one."""
    store = open_backend(load_group(Revocations, config).store_url)
    if isinstance(store, SQLiteLimitStore) and not store.path.exists():
        raise LimitStoreError(f"revocation_db {store.path}: no such file (wrong --config?)")
    return store


async def command(
    config: Path | None, action: str, wanted: Target, *, as_json: bool = False
) -> str:
    """`gateway limits show|reset`: the text (or JSON) to print."""
    store = open_store(config)
    try:
        await store.open()
        if action == "reset":
            await reset(store, wanted)
            return describe_reset(wanted, store.name)
        shown = await show(store, wanted)
    finally:
        await store.close()
    return json.dumps(shown.as_dict(), indent=2) if as_json else shown.text()


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
