"""Times on the command line: unix seconds, or ISO 8601 with an explicit offset."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(text: str) -> int:
    """`1767225600`, `2026-12-01T00:00:00Z` or `2026-12-01T01:00:00+01:00` -> unix seconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither unix seconds nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (add Z or +HH:MM)")
    return int(moment.timestamp())


def describe(timestamp: int, now: float) -> str:
    """`2026-12-01T00:00:00Z (in 3h 20m)`: for humans reading `signer verify`."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    delta = int(timestamp - now)
    span = _span(abs(delta))
    return f"{moment} ({'in ' + span if delta >= 0 else span + ' ago'})"


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
