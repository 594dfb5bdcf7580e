"""Verification: is this request target a genuine, current link for this request?

Order matters: the format is checked first, then the signature, and only an authentic token's
claims (time, method, prefix, IP) are judged, so no claim-based reason is ever given for a forgery.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from signer.addresses import IPAddress, unmapped, within
from signer.algorithms import Algorithm
from signer.errors import Reason, Rejected
from signer.format import Claims, parse_link, slot_setters, under_prefix
from signer.keys import Keyring, Status

#: Seconds of clock difference tolerated between signer and verifier, on Expires, Starts and
#: Issued.
DEFAULT_SKEW = 30


@dataclass(frozen=True, slots=True)
class Verified:
    """An accepted link: the decoded object path, what the token says, and its revocation id."""

    path: str
    claims: Claims
    token_id: str


_VERIFIED_SETTERS: Final = slot_setters(Verified)


def _verified(path: str, claims: Claims, token_id: str) -> Verified:
    """`Verified(...)` at half the cost, for every accepted request (`slot_setters`)."""
    verified = object.__new__(Verified)
    set_path, set_claims, set_token_id = _VERIFIED_SETTERS
    set_path(verified, path)
    set_claims(verified, claims)
    set_token_id(verified, token_id)
    return verified


def token_id(signature: bytes) -> str:
    """The public identifier of one link: hex of the first 16 bytes of SHA-256(signature)."""
    return hashlib.sha256(signature).hexdigest()[:32]


_TOKEN_ID: Final = re.compile(r"[0-9a-f]{32}")


def is_token_id(text: str) -> bool:
    """Whether `text` is shaped like a `token_id` (32 lower-case hex digits), as an operator's
    revocation by digest must be: the one statement of that shape."""
    return _TOKEN_ID.fullmatch(text) is not None


def verify(
    keyring: Keyring,
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    client_ip: IPAddress | None,
    now: float | None = None,
    skew: float = DEFAULT_SKEW,
    max_lifetime: float | None = None,
) -> Verified:
    """Accept the link or raise `Rejected` with its reason.

    `max_lifetime` bounds `Expires - Issued` (step 10a, `lifetime_exceeded`); None leaves that
    step to the caller (the gateway applies its own `max_link_lifetime`).
    """
    link = parse_link(raw_path, raw_query)
    path, claims, signature = link.path, link.claims, link.signature
    key_id = claims.key_id
    check = keyring.verifier_for(key_id)
    key = keyring.get(key_id)
    if check is None or key is None:
        if key is not None and key.status is Status.RETIRED:
            raise Rejected(Reason.RETIRED_KEY, f"key {key_id!r} is retired")
        raise Rejected(Reason.UNKNOWN_KEY, f"no key {key_id!r} in the keyring")
    alg = key.alg
    assert isinstance(alg, Algorithm)  # only our tokens' keys have a verifier
    if len(signature) != alg.signature_length:
        raise Rejected(Reason.MALFORMED, f"Signature is not {alg.signature_length} bytes")
    if not check(signature, link.signed):
        raise Rejected(Reason.BAD_SIGNATURE)
    judge(
        claims,
        path,
        method=method,
        client_ip=client_ip,
        now=now,
        skew=skew,
        max_lifetime=max_lifetime,
    )
    return _verified(path, claims, token_id(signature))


def judge(
    claims: Claims,
    path: str,
    *,
    method: str,
    client_ip: IPAddress | None,
    now: float | None = None,
    skew: float = DEFAULT_SKEW,
    max_lifetime: float | None = None,
) -> None:
    """The checks on an authentic token's claims, shared by every form a token travels in."""
    current = time.time() if now is None else now
    if current >= claims.expires + skew:
        raise Rejected(Reason.EXPIRED, f"expired at {claims.expires}", claims)
    if claims.starts is not None and current < claims.starts - skew:
        raise Rejected(Reason.NOT_YET_VALID, f"valid from {claims.starts}", claims)
    if claims.issued > current + skew:
        # Lifetime caps and `revoke --before` both trust Issued; a future one would escape them.
        raise Rejected(Reason.ISSUED_IN_FUTURE, f"issued at {claims.issued}", claims)
    if not claims.allows_method(method):
        raise Rejected(
            Reason.WRONG_METHOD, f"{method} is not allowed by Method={claims.method}", claims
        )
    if claims.prefix is not None and not under_prefix(path, claims.prefix):
        raise Rejected(Reason.OUTSIDE_PREFIX, "the path is outside the token's Prefix", claims)
    if claims.ip is not None:
        address = None if client_ip is None else unmapped(client_ip)
        if address is None or not within(address, claims.ip):
            raise Rejected(Reason.IP_MISMATCH, f"client {address} is outside {claims.ip}", claims)
    if max_lifetime is not None and claims.expires - claims.issued > max_lifetime:
        # Revocations are kept for max_lifetime: a longer-lived link would outlive them.
        raise Rejected(
            Reason.LIFETIME_EXCEEDED,
            f"lifetime {claims.expires - claims.issued}s exceeds {max_lifetime:g}s",
            claims,
        )


def verify_url(
    url: str,
    keyring: Keyring,
    *,
    method: str = "GET",
    client_ip: IPAddress | None = None,
    now: float | None = None,
    skew: float = DEFAULT_SKEW,
    max_lifetime: float | None = None,
) -> Verified:
    """`verify` for a whole URL (scheme and host are not signed, so they are ignored)."""
    parts = urlsplit(url)
    return verify(
        keyring,
        method=method,
        raw_path=parts.path or "/",
        raw_query=parts.query,
        client_ip=client_ip,
        now=now,
        skew=skew,
        max_lifetime=max_lifetime,
    )
