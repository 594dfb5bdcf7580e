"""Issuing links: the backend's half of the format."""

from __future__ import annotations

import re
import time
from typing import Any, Final, TypedDict, Unpack
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from signer import algorithms
from signer.errors import Rejected, SigningError
from signer.format import (
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
from signer.params import PARAMS
from signer.syntax import has_control

_SLASHES = re.compile(r"[/\\]")

#: Links may not live longer than this unless the caller raises the limit explicitly.
DEFAULT_MAX_LIFETIME = 7 * 24 * 3600


class SignOptions(TypedDict, total=False):
    """The options of `sign_url` and `sign_path`, typed once. Exactly one of `expires_in` and
    `expires_at` is required; every other option defaults to "no such binding". The bindings
    are the `keyword`s of `signer.params.PARAMS` (what each means is said there)."""

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
    max_streams: int | None  # GET/HEAD: at most N clients served at once, fleet-wide
    max_uses: int | None  # GET/HEAD: at most N downloads (requests from byte 0)
    max_served: int | None  # GET/HEAD: at most N bytes served over the link's life
    rate: int | None  # GET/HEAD: paced to N bytes per second
    subject_streams: bool  # GET/HEAD: MaxStreams counts every link of this Sub together
    now: float | None  # the signing time (default: the clock)
    max_lifetime: int  # refuse longer lifetimes (default DEFAULT_MAX_LIFETIME)
    window: int | None  # round Issued/Expires to this many seconds: one URL per window


_OPTION_NAMES: Final = frozenset(SignOptions.__annotations__)
#: The options that are not bindings: when and how long, and how to round.
TIMING_OPTIONS: Final = frozenset(("expires_in", "expires_at", "now", "max_lifetime", "window"))


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
    not exceed `max_lifetime`. With `window`, Issued is rounded down to a multiple of it and
    an `expires_in` lifetime counts from the window's end, so every call within one window
    gives the same URL (a cache can keep it), which lives up to one window longer.
    """
    unknown = options.keys() - _OPTION_NAMES
    if unknown:  # a misspelt binding must not silently give a link without it
        raise TypeError(f"unknown signing option(s): {', '.join(sorted(unknown))}")
    key = keyring.signing_key()
    now = options.get("now")
    issued, expires = signing_times(
        time.time() if now is None else now,
        expires_in=options.get("expires_in"),
        expires_at=options.get("expires_at"),
        window=options.get("window"),
        max_lifetime=options.get("max_lifetime", DEFAULT_MAX_LIFETIME),
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
    bindings: dict[str, Any] = {
        p.field: p.codec.from_option(options.get(p.keyword))
        for p in PARAMS
        if p.keyword is not None
    }
    claims = Claims(expires=expires, key_id=key.id, issued=issued, **bindings)
    try:
        raw_path = canonical(path)
    except UnicodeEncodeError:
        raise SigningError("the path is not valid Unicode") from None
    return sign_target(raw_path, query, claims, key)


def signing_times(
    now: float,
    *,
    expires_in: int | None,
    expires_at: int | None,
    window: int | None = None,
    max_lifetime: int = DEFAULT_MAX_LIFETIME,
) -> tuple[int, int]:
    """(Issued, Expires) for a link signed at `now`.

    Without a window, Issued is `now` in whole seconds. With one, Issued is `now` rounded down
    to a multiple of `window`, and `expires_in` counts from the end of that window, so the
    link lives at least `expires_in` and at most `expires_in + window` seconds from `now`.
    """
    if (expires_in is None) == (expires_at is None):
        raise SigningError("give exactly one of expires_in and expires_at")
    if window is None:
        issued, slack = int(now), 0
    else:
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise SigningError("the window must be a positive number of seconds")
        issued, slack = int(now) // window * window, window
    expires = issued + slack + expires_in if expires_in is not None else expires_at
    assert expires is not None
    lifetime = expires - issued
    if lifetime <= 0:
        raise SigningError("the lifetime must be positive (the link would be born expired)")
    if lifetime > max_lifetime:
        raise SigningError(
            f"the lifetime {lifetime}s exceeds the maximum {max_lifetime}s; "
            "raise max_lifetime deliberately if you mean it"
        )
    return issued, expires


def sign_target(raw_path: str, app_query: str, claims: Claims, key: Key) -> str:
    """Sign an already canonical path: the format's signing rule with nothing else around it."""
    if key.secret is None:
        raise SigningError(f"key {key.id!r} has no private material")
    if not isinstance(key.alg, algorithms.Algorithm):
        raise SigningError(f"key {key.id!r} verifies {key.scheme} links; it signs no tokens")
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

    The algorithm of docs/token-format.md §10, so that every language writes the same bytes:
    an ASCII fallback in `filename` (each code point outside printable ASCII, and `"` and `%`,
    replaced by `_`) and, unless that is the name itself, the exact name in `filename*`
    (RFC 8187: UTF-8, every byte but attr-char escaped with upper-case hex).
    """
    if not filename or _SLASHES.search(filename) or has_control(filename):
        raise SigningError("the file name must be non-empty, without '/', '\\' or controls")
    kind = "inline" if inline else "attachment"
    fallback = "".join(c if " " <= c <= "~" and c not in '"%' else "_" for c in filename)
    exact = quote(filename, safe="!#$&+-.^_`|~", encoding="utf-8")
    if fallback == filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def _decoded(raw: str, what: str) -> str:
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SigningError(f"{what} is not valid UTF-8 once percent-decoded") from None
