"""Issuing links: the backend's half of the format."""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Final, TypedDict, Unpack
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from signer import algorithms
from signer.addresses import IPNetwork
from signer.errors import Rejected, SigningError
from signer.format import (
    IPV4_MAPPED,
    Claims,
    b64encode,
    canonical,
    check_app_query,
    check_path,
    check_prefix,
    encode_claims,
    string_to_sign,
    under_prefix,
)
from signer.keys import Key, Keyring

_CONTROL_OR_SLASH = re.compile(r"[\x00-\x1f\x7f/\\]")

#: Links may not live longer than this unless the caller raises the limit explicitly.
DEFAULT_MAX_LIFETIME = 7 * 24 * 3600


class SignOptions(TypedDict, total=False):
    """The options of `sign_url` and `sign_path`, declared once. Exactly one of `expires_in` and
    `expires_at` is required; every other option defaults to "no such binding"."""

    expires_in: int | None  # seconds from now
    expires_at: int | None  # unix seconds
    starts_at: int | None  # not valid before (unix seconds)
    ip: str | None  # client address or network, in any spelling `ipaddress` reads
    prefix: str | None  # decoded path ending in '/': every path under it
    method: str | None  # GET, HEAD or PUT; default GET and HEAD
    sub: str | None  # opaque subject id
    response_content_type: str | None  # answer with this Content-Type
    response_content_disposition: str | None  # and this Content-Disposition (`content_disposition`)
    content_type: str | None  # PUT: exact type, or a type/ prefix
    min_bytes: int | None  # PUT: smallest accepted body
    max_bytes: int | None  # PUT: largest accepted body
    no_overwrite: bool  # PUT: fail if the object exists
    one_time: bool  # PUT: usable for one upload
    now: float | None  # the signing time (default: the clock)
    max_lifetime: int  # refuse longer lifetimes (default DEFAULT_MAX_LIFETIME)


_OPTION_NAMES: Final = frozenset(SignOptions.__annotations__)


def sign_url(url: str, keyring: Keyring, **options: Unpack[SignOptions]) -> str:
    """Return `url` with a token appended, signed by the keyring's active key.

    `url` is absolute or a bare path; its path is percent-decoded once, so both `/a b.mp4` and
    `/a%20b.mp4` name the object `a b.mp4`. Existing query parameters are kept verbatim and
    covered by the signature.
    """
    parts = urlsplit(url)
    if parts.fragment:
        raise SigningError("the URL must not have a #fragment")
    path = _decoded(parts.path, "the URL path")
    target = sign_path(path, keyring, query=parts.query, **options)
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")) + target


def sign_path(
    path: str, keyring: Keyring, *, query: str = "", **options: Unpack[SignOptions]
) -> str:
    """Sign a decoded object path (`/videos/a b.mp4`); returns the request target to append.

    `query` holds the application's own parameters, already percent-encoded. The lifetime may
    not exceed `max_lifetime`.
    """
    unknown = options.keys() - _OPTION_NAMES
    if unknown:  # a misspelt binding must not silently give a link without it
        raise TypeError(f"unknown signing option(s): {', '.join(sorted(unknown))}")
    key = keyring.signing_key()
    now = options.get("now")
    issued = int(time.time() if now is None else now)
    expires = _expiry(
        issued,
        options.get("expires_in"),
        options.get("expires_at"),
        options.get("max_lifetime", DEFAULT_MAX_LIFETIME),
    )
    prefix = options.get("prefix")
    try:
        check_path(path)
        if prefix is not None:
            check_prefix(prefix)
    except Rejected as exc:
        raise SigningError(exc.detail) from None
    if prefix is not None and not under_prefix(path, prefix):
        raise SigningError("the path is not under the prefix")
    ip = options.get("ip")
    method = options.get("method")
    claims = Claims(
        expires=expires,
        key_id=key.id,
        issued=issued,
        starts=options.get("starts_at"),
        ip=_ip_binding(ip) if ip is not None else None,
        prefix=prefix,
        method=method.upper() if method else None,
        sub=options.get("sub"),
        response_content_type=options.get("response_content_type"),
        response_content_disposition=options.get("response_content_disposition"),
        content_type=options.get("content_type"),
        min_bytes=options.get("min_bytes"),
        max_bytes=options.get("max_bytes"),
        no_overwrite=options.get("no_overwrite", False),
        one_time=options.get("one_time", False),
    )
    try:
        raw_path = canonical(path)
    except UnicodeEncodeError:
        raise SigningError("the path is not valid Unicode") from None
    return sign_target(raw_path, query, claims, key)


def sign_target(raw_path: str, app_query: str, claims: Claims, key: Key) -> str:
    """Sign an already canonical path: the format's signing rule with nothing else around it."""
    if key.secret is None:
        raise SigningError(f"key {key.id!r} has no private material")
    if claims.key_id != key.id:
        raise SigningError("the claims name another key")
    try:
        if app_query:
            check_app_query(app_query)
        block = encode_claims(claims)
    except Rejected as exc:
        raise SigningError(exc.detail) from None
    query = f"{app_query}&{block}" if app_query else block
    signed = string_to_sign(raw_path, query, prefixed=claims.prefix is not None)
    signature = algorithms.sign(key.alg, key.secret, signed)
    return f"{raw_path}?{query}&Signature={b64encode(signature)}"


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """A Content-Disposition value naming `filename` (RFC 6266), for any Unicode name.

    Gives an ASCII fallback in `filename` and the exact name in `filename*` (RFC 8187).
    """
    if not filename or _CONTROL_OR_SLASH.search(filename):
        raise SigningError("the file name must be non-empty, without '/', '\\' or controls")
    kind = "inline" if inline else "attachment"
    fallback = "".join(c if " " <= c <= "~" and c not in '"%' else "_" for c in filename)
    exact = quote(filename, safe="!#$&+-.^_`|~", encoding="utf-8")
    if fallback == filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def _expiry(issued: int, expires_in: int | None, expires_at: int | None, limit: int) -> int:
    if (expires_in is None) == (expires_at is None):
        raise SigningError("give exactly one of expires_in and expires_at")
    expires = issued + expires_in if expires_in is not None else expires_at
    assert expires is not None
    lifetime = expires - issued
    if lifetime <= 0:
        raise SigningError("the lifetime must be positive (the link would be born expired)")
    if lifetime > limit:
        raise SigningError(
            f"the lifetime {lifetime}s exceeds the maximum {limit}s; "
            "raise max_lifetime deliberately if you mean it"
        )
    return expires


def _ip_binding(ip: str) -> IPNetwork:
    """The binding for an address or network in any spelling `ipaddress` reads.

    An IPv4-mapped one (`::ffff:127.0.0.1`, `::ffff:0:0/104`), which is how a backend on a
    dual-stack socket sees IPv4 clients, is written in its IPv4 form: verifiers compare mapped
    client addresses as IPv4 and refuse mapped bindings, so the IPv6 form could never be used.
    """
    try:
        network = ipaddress.ip_network(ip, strict=True)
    except ValueError as exc:
        raise SigningError(f"ip {ip!r}: {exc}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _decoded(raw: str, what: str) -> str:
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SigningError(f"{what} is not valid UTF-8 once percent-decoded") from None
