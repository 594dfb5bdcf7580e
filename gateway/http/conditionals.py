"""Conditional requests (RFC 9110 §13), evaluated by the gateway against origin metadata.

The gateway answers 304/412 itself so a revalidating client costs one metadata lookup instead
of a streamed body. Malformed header values are ignored rather than rejected, as the RFC asks,
so nothing here raises on client input.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

__all__ = [
    "Outcome",
    "Validators",
    "evaluate",
    "format_http_date",
    "if_range_allows",
    "parse_http_date",
]

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc excludes DQUOTE, controls and space.
# Anything >= 0x80 stands in for obs-text, since header bytes may arrive decoded as UTF-8.
_ETAG = r'(?P<weak>W/)?"(?P<opaque>[^"\x00-\x20\x7f]*)"'
_ETAG_RE = re.compile(_ETAG)
# One list element: a well-formed entity-tag followed by OWS and a comma or the end, or else a
# malformed run up to the next comma. Commas are legal inside opaque tags, so a naive split on
# "," would cut `"a,b"` in two.
_ELEMENT_RE = re.compile(rf"[ \t]*(?:(?P<tag>{_ETAG})[ \t]*|[^,]*)(?:,|\Z)")
_SAFE = frozenset({"GET", "HEAD"})


class Outcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"  # 304
    PRECONDITION_FAILED = "precondition_failed"  # 412


@dataclass(frozen=True, slots=True)
class _EntityTag:
    weak: bool
    opaque: str


@dataclass(frozen=True, slots=True)
class Validators:
    """What the origin says about the current representation."""

    etag: str | None  # as sent by the origin, quoted, maybe with W/: '"abc"' or 'W/"abc"'
    last_modified: datetime | None  # timezone-aware

    def __post_init__(self) -> None:
        # A naive datetime would make every comparison below raise, and only on the first
        # conditional request; fail where the metadata is built instead.
        if self.last_modified is not None and self.last_modified.utcoffset() is None:
            raise ValueError("last_modified must be timezone-aware")


def _parse_etag(value: str) -> _EntityTag | None:
    match = _ETAG_RE.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    return _EntityTag(weak=match["weak"] is not None, opaque=match["opaque"])


def _parse_etag_list(value: str) -> list[_EntityTag]:
    """The well-formed entity-tags in a list; malformed elements are dropped, not fatal."""
    tags: list[_EntityTag] = []
    pos = 0
    while pos < len(value):
        match = _ELEMENT_RE.match(value, pos)
        # `[^,]*` then `,` or the end always matches and always advances.
        assert match is not None
        assert match.end() > pos
        if match["tag"] is not None:
            tags.append(_EntityTag(weak=match["weak"] is not None, opaque=match["opaque"]))
        pos = match.end()
    return tags


def _is_wildcard(value: str) -> bool:
    # "*" is an alternative to the list, not a list member, so `"a", *` is malformed.
    return value.strip(" \t") == "*"


def _strong_match(a: _EntityTag, b: _EntityTag) -> bool:
    return not a.weak and not b.weak and a.opaque == b.opaque


def _weak_match(a: _EntityTag, b: _EntityTag) -> bool:
    return a.opaque == b.opaque


def _to_second(moment: datetime) -> datetime:
    # HTTP-dates carry whole seconds; an origin's sub-second mtime must not make an object look
    # newer than the date the client was given for it.
    return moment.replace(microsecond=0)


def parse_http_date(value: str) -> datetime | None:
    """An aware UTC datetime, or None when `value` is not an HTTP-date.

    Accepts IMF-fixdate and the obsolete RFC 850 and asctime forms (RFC 9110 §5.6.7). A date
    without a zone is taken as UTC, since HTTP-dates are always GMT.
    """
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@functools.lru_cache(maxsize=1024)  # every response formats its object's Last-Modified
def format_http_date(moment: datetime) -> str:
    """IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"; locale-independent."""
    if moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware")
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def evaluate(
    method: str,
    if_match: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    if_unmodified_since: str | None,
    validators: Validators,
) -> Outcome:
    """Apply the preconditions in RFC 9110 §13.2.2 order to an object known to exist.

    A header is present when it is not None, even if empty: an empty If-Match lists no tags, so
    nothing matches it.
    """
    current = None if validators.etag is None else _parse_etag(validators.etag)
    modified = None if validators.last_modified is None else _to_second(validators.last_modified)

    if if_match is not None:
        if not _is_wildcard(if_match) and (
            current is None
            or not any(_strong_match(tag, current) for tag in _parse_etag_list(if_match))
        ):
            return Outcome.PRECONDITION_FAILED
    elif if_unmodified_since is not None and modified is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and modified > date:
            return Outcome.PRECONDITION_FAILED

    if if_none_match is not None:
        if _is_wildcard(if_none_match) or (
            current is not None
            and any(_weak_match(tag, current) for tag in _parse_etag_list(if_none_match))
        ):
            return Outcome.NOT_MODIFIED if method in _SAFE else Outcome.PRECONDITION_FAILED
    elif method in _SAFE and if_modified_since is not None and modified is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and modified <= date:
            return Outcome.NOT_MODIFIED

    return Outcome.PROCEED


def if_range_allows(if_range: str | None, validators: Validators) -> bool:
    """True when a Range may be honoured: no If-Range, or it matches the current representation.

    An entity-tag matches only by strong comparison, so a weak tag never does; a date matches
    only when exactly equal to Last-Modified. Anything else, including a malformed value, means
    the client's partial copy may be stale, so the full representation must be sent.
    """
    if if_range is None:
        return True
    value = if_range.strip(" \t")
    if value.startswith(('"', "W/")):
        tag = _parse_etag(value)
        current = None if validators.etag is None else _parse_etag(validators.etag)
        return tag is not None and current is not None and _strong_match(tag, current)
    if validators.last_modified is None:
        return False
    date = parse_http_date(value)
    return date is not None and date == _to_second(validators.last_modified)
