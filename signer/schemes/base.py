"""What every link scheme shares: the request it sees, what it yields, and its interface."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from signer.addresses import IPAddress
from signer.errors import Reason, Rejected
from signer.format import Claims
from signer.keys import Keyring
from signer.sign import DEFAULT_MAX_LIFETIME
from signer.verify import Verified

#: The name of our own token's scheme, as labels and logs show it.
EDGE: Final = "edge"
#: What a link that states no issue time is counted from, unless its scheme has its own notion.
MAX_LINK_LIFETIME: Final = "the max link lifetime"


def unstated_issue(
    expires: int,
    lifetime: float,
    claims: Callable[[int], Claims],
    *,
    now: float,
    skew: float,
    bound: str = MAX_LINK_LIFETIME,
) -> Claims:
    """The claims (`claims(issued)`) of a link that states no issue time: the one rule for all
    schemes. It counts as issued `lifetime` before it expires, the earliest a link within that
    lifetime could have been made: `expires - issued <= lifetime` then holds as for a stated
    issue time, a revocation by key or prefix at T covers every such link valid at T, and its
    entry (kept `lifetime` past T) outlives each link it covers. A link expiring further away
    would be issued in the future: `lifetime_exceeded`, with `skew` as for a stated issue time.
    `bound` names `lifetime` in the refusal."""
    issued = max(0, expires - int(lifetime))
    found = claims(issued)
    if issued > now + skew:
        detail = f"no issue time stated, and expires {expires} is over {lifetime:g}s ({bound}) away"
        raise Rejected(Reason.LIFETIME_EXCEEDED, detail, found)
    return found


def _no_headers(name: str) -> Sequence[str]:
    return ()


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """What a scheme may look at: the request target as received, and the headers it signs.

    `host` is the host the client asked for (behind a trusted proxy, the one it forwarded);
    `header` gives every value of a request header by (case-insensitive) name; `max_lifetime`
    is the verifier's bound on a link's lifetime (None: `signer.DEFAULT_MAX_LIFETIME`), for
    links that state no issue time (`unstated_issue`).
    """

    method: str
    raw_path: str
    raw_query: str
    host: str | None = None
    header: Callable[[str], Sequence[str]] = field(default=_no_headers)
    client_ip: IPAddress | None = None
    max_lifetime: float | None = None

    @property
    def lifetime(self) -> float:
        """`max_lifetime`, or the default bound when none is given."""
        return DEFAULT_MAX_LIFETIME if self.max_lifetime is None else self.max_lifetime


@dataclass(frozen=True, slots=True)
class SchemeLink:
    """A verified link of another scheme: what our token would have given, and the bucket a
    path-style link names (S3 schemes; the gateway maps it to its origin), else None.
    `issued_from` is set when the link states no issue time: what `unstated_issue` counted
    it from (`MAX_LINK_LIFETIME`, or the scheme's own bound), for `signer verify` to say."""

    verified: Verified
    bucket: str | None = None
    issued_from: str | None = None


class Scheme(Protocol):
    """One link scheme. It may also declare `detected_by`: names of query parameters, one of
    which (in any case, at the start of the query or after an '&') every query it `detects`
    carries. `signer.schemes.detect` then screens all such schemes with one search, and asks
    them only when it finds one of these names (a scheme without it is always asked)."""

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
