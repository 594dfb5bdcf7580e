"""What every link scheme shares: the request it sees, what it yields, and its interface."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from signer.addresses import IPAddress
from signer.keys import Keyring
from signer.verify import Verified

#: The name of our own token's scheme, as labels and logs show it.
EDGE: Final = "edge"
#: `Claims.issued` of a link that states no issue time (a CloudFront policy without
#: DateGreaterThan): earlier than any revocation's bound, so revocations by key and prefix
#: cover it, and `max_link_lifetime` bounds what is left of it (Expires - now) instead.
NO_ISSUE_TIME: Final = 0


def _no_headers(name: str) -> Sequence[str]:
    return ()


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """What a scheme may look at: the request target as received, and the headers it signs.

    `host` is the host the client asked for (behind a trusted proxy, the one it forwarded);
    `header` gives every value of a request header by (case-insensitive) name; `max_lifetime`
    is the verifier's bound on a link's lifetime (None: `signer.DEFAULT_MAX_LIFETIME`), for
    schemes whose links carry no issue time to measure it from.
    """

    method: str
    raw_path: str
    raw_query: str
    host: str | None = None
    header: Callable[[str], Sequence[str]] = field(default=_no_headers)
    client_ip: IPAddress | None = None
    max_lifetime: float | None = None


@dataclass(frozen=True, slots=True)
class SchemeLink:
    """A verified link of another scheme: what our token would have given, and the bucket a
    path-style link names (S3 schemes; the gateway maps it to its origin), else None."""

    verified: Verified
    bucket: str | None = None


class Scheme(Protocol):
    name: str

    def detects(self, raw_query: str) -> bool:
        """Whether the query carries this scheme's link (well formed or not)."""
        ...

    def carried(self, header: Callable[[str], Sequence[str]]) -> bool:
        """Whether the request's cookies or headers carry this scheme's link (well formed or
        not), for schemes whose links also travel there; `header` gives every value of a
        request header by (case-insensitive) name. The URL wins: asked only when it has none."""
        ...

    def verify(
        self, keyring: Keyring, request: LinkRequest, *, now: float | None, skew: float
    ) -> SchemeLink:
        """Accept the link or raise `signer.Rejected` with its reason."""
        ...

    def explain(self, request: LinkRequest) -> list[str]:
        """What was signed (the canonical request, the string to sign), for `signer verify`;
        never a secret. Raises `Rejected` when the link cannot be read at all."""
        ...

    def revocation(self, raw_path: str, raw_query: str) -> tuple[str, int]:
        """(token id, expiry) of a link, unverified: what revoking it by URL records."""
        ...

    def words(self, reason: str) -> str | None:
        """How the scheme's own service words a refusal, for clients that look for it."""
        ...
