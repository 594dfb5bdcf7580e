"""Where a request's token travels, reduced to the (raw path, raw query) pairs to verify.

    path form   /token=<payload>/hls/ep1/seg001.ts    verified as sent (the format unwraps it)
    query form  /hls/ep1/master.m3u8?...&Signature=  verified as sent
    cookie      EdgeToken=<payload>, no token in URL  verified as the payload's query sent with
                                                      the request's own path

The URL wins over a cookie: a link that carries a token is judged by that token alone, even when
a cookie would have passed. A browser may send several `EdgeToken` cookies (one per matching
`Path`, and any a sibling site tossed in), so cookies are chosen by verifying them, not by what
they claim: `candidates` lists what to try, `first_verified` tries it. Every form ends in the
same `verify` call, so expiry, IP, prefix and revocation checks are the same whichever way the
token came.

A link of another scheme (`signer.schemes`: an S3 presigned URL) in the query is its own single
candidate; one in cookies or headers (a scheme's `carried`) is a candidate after the token
cookies, verified in full by its scheme like any cookie; a target that carries two schemes' links
is refused whole (`ambiguous_link`). `verify_scheme` verifies it into the same `Verified`, so the
pipeline goes on exactly as for our token.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from gateway.errors import Refusal, Refused
from signer.errors import Reason, Rejected
from signer.format import decode_payload, has_token, is_path_form, unverified_prefix_covers
from signer.keys import Keyring
from signer.schemes import EDGE, SCHEMES, Ambiguous, LinkRequest, carried_by, detect
from signer.verify import Verified

COOKIE_NAME = "EdgeToken"
#: Token cookies verified per request at most (a browser sends one per matching Path). Values
#: that are not a token payload are skipped without counting, so junk cannot hide a good one.
MAX_COOKIES = 8

V = TypeVar("V")


class Form(enum.StrEnum):
    PATH = "path"
    QUERY = "query"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class Presented:
    form: Form
    raw_path: str
    raw_query: str
    scheme: str = EDGE  # whose link: our token, or a name in `signer.schemes.SCHEMES`


def candidates(
    raw_path: str,
    raw_query: str,
    cookie_headers: Iterable[str],
    header: Callable[[str], Sequence[str]] | None = None,
) -> list[Presented]:
    """What to verify, in order: the URL's token alone, else up to `MAX_COOKIES` token cookies
    (those whose unverified Prefix covers the path first, then as sent), then one candidate per
    other scheme whose link the cookies or headers carry (`header`, `signer.schemes.carried_by`).

    Without any token the query form alone is returned, and verification says `missing_token`.
    Raises `Rejected(MALFORMED)` when cookies of the name came but none is a token payload (and
    no other scheme's link came), and `Refused(AMBIGUOUS_LINK)` when the URL carries the links
    of two schemes.
    """
    try:
        scheme = detect(raw_path, raw_query)
    except Ambiguous:
        raise Refused(Refusal.AMBIGUOUS_LINK) from None
    if scheme is not None:
        return [Presented(Form.QUERY, raw_path, raw_query, scheme.name)]
    if is_path_form(raw_path):
        return [Presented(Form.PATH, raw_path, raw_query)]
    if has_token(raw_query):
        return [Presented(Form.QUERY, raw_path, raw_query)]
    found: list[Presented] = []
    sent = False
    for value in iter_cookie_values(cookie_headers, COOKIE_NAME):
        sent = True
        try:
            query = decode_payload(value, "the token cookie")
        except Rejected:
            continue
        if has_token(query):
            found.append(Presented(Form.COOKIE, raw_path, query))
            if len(found) == MAX_COOKIES:
                break
    found.sort(key=lambda p: not unverified_prefix_covers(p.raw_path, p.raw_query))
    if header is not None:
        found += [
            Presented(Form.COOKIE, raw_path, raw_query, other.name) for other in carried_by(header)
        ]
    if found:
        return found
    if sent:
        raise Rejected(Reason.MALFORMED, "the token cookie is not a token payload")
    return [Presented(Form.QUERY, raw_path, raw_query)]


def first_verified(
    presented: Sequence[Presented], verify: Callable[[Presented], V]
) -> tuple[Presented, V]:
    """The first of `presented` that `verify` accepts, with what it returned.

    When none is accepted, raises the most telling rejection: the first about an authentic
    token's claims (an expired cookie says `expired`), else the first of all.
    """
    refused: Rejected | None = None
    for candidate in presented:
        try:
            return candidate, verify(candidate)
        except Rejected as exc:
            if refused is None or (refused.claims is None and exc.claims is not None):
                refused = exc
    if refused is None:
        raise ValueError("nothing was presented")
    raise refused


def verify_scheme(
    presented: Presented, keyring: Keyring, request: LinkRequest, *, bucket: str, skew: float
) -> Verified:
    """Verify a link of another scheme. A path-style link names a bucket, which must be the
    origin's (`bucket`): its object path is then mapped like our token's."""
    link = SCHEMES[presented.scheme].verify(keyring, request, now=None, skew=skew)
    if link.bucket is not None and link.bucket != bucket:
        raise Refused(Refusal.WRONG_BUCKET)
    return link.verified


def locate(raw_path: str, raw_query: str, cookie_headers: Iterable[str]) -> Presented:
    """The first of `candidates`: what to verify when only one verification is made."""
    return candidates(raw_path, raw_query, cookie_headers)[0]


def iter_cookie_values(headers: Iterable[str], name: str) -> Iterator[str]:
    """Every value of cookie `name`, in the order sent (RFC 6265: longest Path first)."""
    for header in headers:
        for pair in header.split(";"):
            key, eq, value = pair.strip().partition("=")
            if eq and key == name:
                yield value.strip().strip('"')


def cookie_values(headers: Iterable[str], name: str) -> list[str]:
    """The first `MAX_COOKIES` values of cookie `name`, in the order sent."""
    return list(itertools.islice(iter_cookie_values(headers, name), MAX_COOKIES))
