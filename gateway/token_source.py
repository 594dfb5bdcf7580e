"""Where a request's token travels, reduced to the one (raw path, raw query) pair to verify.

    path form   /token=<payload>/hls/ep1/seg001.ts    verified as sent (the format unwraps it)
    query form  /hls/ep1/master.m3u8?...&Signature=  verified as sent
    cookie      EdgeToken=<payload>, no token in URL  verified as the payload's query sent with
                                                      the request's own path

The URL wins over a cookie: a link that carries a token is judged by that token alone, even when
a cookie would have passed. Every form ends in the same single `verify` call, so expiry, IP,
prefix and revocation checks are the same whichever way the token came.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from signer.errors import Reason, Rejected
from signer.format import decode_payload, is_path_form

COOKIE_NAME = "EdgeToken"
#: Cookies of this name looked at per request (a browser sends one per matching Path).
MAX_COOKIES = 8


class Form(enum.StrEnum):
    PATH = "path"
    QUERY = "query"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class Presented:
    form: Form
    raw_path: str
    raw_query: str


def locate(raw_path: str, raw_query: str, cookie_headers: Iterable[str]) -> Presented:
    """The token to verify. Raises `Rejected(MALFORMED)` for a cookie that cannot be decoded.

    Without any token the query form is returned, and verification says `missing_token`.
    """
    if is_path_form(raw_path):
        return Presented(Form.PATH, raw_path, raw_query)
    if has_query_token(raw_query):
        return Presented(Form.QUERY, raw_path, raw_query)
    values = cookie_values(cookie_headers, COOKIE_NAME)
    if not values:
        return Presented(Form.QUERY, raw_path, raw_query)
    queries = []
    for value in values:
        try:
            queries.append(decode_payload(value, "the token cookie"))
        except Rejected:
            continue  # another cookie of the name may still be good
    if not queries:
        raise Rejected(Reason.MALFORMED, "the token cookie is not a token payload")
    chosen = next((q for q in queries if _covers(q, raw_path)), queries[0])
    return Presented(Form.COOKIE, raw_path, chosen)


def has_query_token(raw_query: str) -> bool:
    return raw_query.startswith("Expires=") or "&Expires=" in raw_query


def cookie_values(headers: Iterable[str], name: str) -> list[str]:
    """Every value of cookie `name`, in the order sent (RFC 6265: longest Path first)."""
    values: list[str] = []
    for header in headers:
        for pair in header.split(";"):
            key, eq, value = pair.strip().partition("=")
            if eq and key == name:
                values.append(value.strip().strip('"'))
                if len(values) == MAX_COOKIES:
                    return values
    return values


def _covers(query: str, raw_path: str) -> bool:
    """Whether the (unverified) token's Prefix covers the path: only to pick among cookies.

    Canonical encoding is per character, so comparing the raw forms is comparing the decoded
    ones; a non-canonical prefix is refused by verification anyway.
    """
    for part in query.split("&"):
        if part.startswith("Prefix="):
            return raw_path.startswith(part[len("Prefix=") :])
    return False
