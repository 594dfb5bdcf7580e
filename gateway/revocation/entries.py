"""What a revocation says, and how long it has to be kept.

Four kinds, each matching links on one field:

* `token`  - one link, by its token id (`signer.token_id`: a digest of its signature,
  `signer.is_token_id` its shape; an S3 presigned URL's too);
* `sub`    - every link of a subject issued at or before `before`;
* `key_id` - every link signed with a key, issued at or before `before`;
* `prefix` - every link for a path at or under a path prefix (segment boundary), issued at or
  before `before`.

An entry is dropped at `until`: by then every link it can match has expired. For one link that
is its own `Expires` (plus the clock skew); for the other kinds it is `before` plus the longest
lifetime the gateway accepts (`max_link_lifetime`), which the gateway enforces for exactly this
reason. Nothing here touches storage or HTTP.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from signer.errors import Rejected
from signer.format import KEY_ID, check_path, parse_link, valid_sub
from signer.schemes import Ambiguous, detect
from signer.verify import is_token_id, token_id

_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")


class RevocationError(ValueError):
    """An operator's revocation request is invalid; the message says which part and why."""


class Kind(enum.StrEnum):
    TOKEN = "token"  # noqa: S105 - the kind "one link", not a secret
    SUB = "sub"
    KEY_ID = "key_id"
    PREFIX = "prefix"


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: Kind
    value: str
    until: float  # unix seconds after which the entry can no longer match a valid link
    before: float | None = None  # issue-time bound; None for `token`

    @property
    def field(self) -> str:
        """The store's key for this entry: one entry per (kind, value)."""
        return f"{self.kind.value}:{self.value}"

    def merged(self, other: Revocation) -> Revocation:
        """Two revocations of the same thing: the union of what they cover."""
        before = None
        if self.before is not None and other.before is not None:
            before = max(self.before, other.before)
        return Revocation(self.kind, self.value, max(self.until, other.until), before)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Revocation:
        try:
            data = json.loads(text)
            return checked(Kind(data["kind"]), data["value"], data["until"], data.get("before"))
        except (ValueError, KeyError, TypeError) as exc:
            raise RevocationError(f"not a revocation entry: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "value": self.value,
            "before": self.before,
            "until": self.until,
        }


def checked(kind: Kind, value: Any, until: Any, before: Any = None) -> Revocation:
    """Build an entry from untrusted input (API, CLI, store), validating every field."""
    if not isinstance(value, str):
        raise RevocationError(f"{kind.value}: value must be a string")
    if _SURROGATE.search(value):  # could match no link, and no store can encode it
        raise RevocationError(f"{kind.value}: value is not valid Unicode")
    until = _time("until", until)
    if kind is Kind.TOKEN:
        if not is_token_id(value):
            raise RevocationError("digest: must be 32 lower-case hex digits (a token id)")
        return Revocation(kind, value, until)
    before = _time("before", before)
    if kind is Kind.SUB:
        if not valid_sub(value):
            raise RevocationError("sub: must be 1-256 characters without control characters")
    elif kind is Kind.KEY_ID:
        if not KEY_ID.fullmatch(value):
            raise RevocationError("key_id: must be 1-64 of A-Z a-z 0-9 . _ -")
    else:
        value = normalise_prefix(value)
    return Revocation(kind, value, until, before)


def normalise_prefix(prefix: str) -> str:
    """`/videos/ep1/` and `/videos/ep1` both mean "ep1 and everything under it"."""
    if prefix == "/":
        return prefix
    trimmed = prefix[:-1] if prefix.endswith("/") else prefix
    try:
        return check_path(trimmed, "prefix")
    except Rejected as exc:
        raise RevocationError(f"prefix: {exc.detail}") from None


def path_segments(path: str) -> Iterator[str]:
    """The segments of an object path or of a stored prefix, in order, one at a time: `/a/b`
    gives `a` then `b`; `/` gives none. Prefix matching walks these (`RevocationView`), so its
    cost grows with the length of the path: the list of every prefix (`/a`, `/a/b`, ...) would
    grow with its square, and anyone holding a `Prefix` link chooses how deep the path goes."""
    start, end = 1, len(path)
    while start < end:
        stop = path.find("/", start)
        if stop < 0:
            stop = end
        yield path[start:stop]
        start = stop + 1


def for_url(url: str, *, skew: float) -> Revocation:
    """Revoke the one link `url` (absolute or path + query, our token or another scheme's
    link, `signer.schemes`); kept until it expires."""
    parts = urlsplit(url)
    raw_path = parts.path or "/"
    try:
        scheme = detect(raw_path, parts.query)
        if scheme is not None:
            digest, expires = scheme.revocation(raw_path, parts.query)
            return Revocation(Kind.TOKEN, digest, expires + skew)
        link = parse_link(raw_path, parts.query)
    except Ambiguous:
        raise RevocationError("url: carries the links of more than one scheme") from None
    except Rejected as exc:
        raise RevocationError(f"url: not a signed link ({exc.reason.value})") from None
    return Revocation(Kind.TOKEN, token_id(link.signature), link.claims.expires + skew)


def _time(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RevocationError(f"{name}: must be unix seconds")
    if isinstance(value, float) and not math.isfinite(value):  # isfinite(int) can overflow
        raise RevocationError(f"{name}: must be unix seconds")
    if not 0 <= value < 2**40:
        raise RevocationError(f"{name}: out of range")
    return float(value)


#: What an operator can revoke by: the one vocabulary of `gateway revoke` and the admin API.
REQUEST_KINDS: Final = ("url", "digest", "sub", "key_id", "prefix")


def from_request(
    what: str,
    value: str,
    *,
    before: float | None,
    now: float,
    max_lifetime: float,
    skew: float,
) -> Revocation:
    """An operator's request (`gateway revoke`, the admin API) as an entry with its lifetime.

    `what` is one of `REQUEST_KINDS`. `before` (default: now) bounds the issue time for the
    kinds that match many links; a link revoked by `digest` alone is kept for the longest
    lifetime a link may have, since its own expiry is unknown. A `prefix` is the decoded path
    (what links sign and entries match); the percent-encoded form that the access log shows is
    refused rather than stored as an entry that matches nothing.
    """
    if what not in REQUEST_KINDS:
        raise RevocationError(f"revoke: one of {', '.join(REQUEST_KINDS)} is required")
    if before is not None and what in ("url", "digest"):
        raise RevocationError("before: applies to sub, key_id and prefix revocations only")
    if what == "url":
        return for_url(value, skew=skew)
    if what == "digest":
        return checked(Kind.TOKEN, value, now + max_lifetime + skew)
    if what == "prefix" and _PERCENT_ESCAPE.search(value):
        raise RevocationError(
            f"prefix: give the decoded path ({unquote(value)!r}), not the percent-encoded form "
            "the access log shows; a prefix cannot contain '%' followed by two hex digits"
        )
    bound = now if before is None else before
    entry = checked(Kind(what), value, _time("before", bound) + max_lifetime + skew, bound)
    if entry.until <= now:
        raise RevocationError(
            "before: every link issued that early has already expired (max_link_lifetime); "
            "nothing to revoke"
        )
    return entry
