"""How long a cached object may be served without asking storage again (RFC 9111 §4.2).

The edge is a shared cache in front of private storage: the object's own `Cache-Control`
(`no-store`, `no-cache`, `s-maxage`, `max-age`) and `Expires`, as stored with it in the bucket,
decide; without them, the gateway's default TTL does. `private` does not stop this cache: it
addresses caches *after* the gateway (whose responses stay `private`), and every hit here is
served only after the request's own token was verified.
"""

from __future__ import annotations

import re
from typing import Final

from gateway.http.conditionals import parse_http_date
from gateway.storage import ObjectMeta

# name[=token or quoted-string], up to the next comma (a quoted comma does not end it).
_DIRECTIVE: Final = re.compile(r'\s*([A-Za-z-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^",]*))?\s*(?:,|$)')
_MAX_DELTA: Final = 2**31  # RFC 9111 §1.2.2: larger delta-seconds count as this


def lifetime(meta: ObjectMeta, default_ttl: float, now: float) -> float | None:
    """Seconds the object stays fresh from `now`; 0: revalidate every time; None: not to be
    stored at all."""
    if meta.cache_control is None and meta.expires is None:
        return default_ttl  # most objects: no caching metadata of their own
    directives: dict[str, str | None] = {}
    for match in _DIRECTIVE.finditer(meta.cache_control or ""):
        value = match.group(2)
        if value is not None:
            value = value[1:-1] if value.startswith('"') else value.strip()
        directives[match.group(1).lower()] = value
    if "no-store" in directives:
        return None
    if "no-cache" in directives:  # with field names too: the whole object is revalidated
        return 0.0
    for name in ("s-maxage", "max-age"):
        if name in directives:
            value = directives[name]
            if value is None or not (value.isascii() and value.isdigit()):
                return 0.0  # invalid: taken as stale (RFC 9111 §4.2.1)
            return float(min(int(value), _MAX_DELTA))
    if meta.expires is not None:
        expires = parse_http_date(meta.expires)
        return max(0.0, expires.timestamp() - now) if expires is not None else 0.0
    return default_ttl
