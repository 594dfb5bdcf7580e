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

_DIRECTIVE: Final = re.compile(r"\s*([A-Za-z-]+)\s*(?:=\s*\"?([0-9]+)\"?)?\s*")


def lifetime(meta: ObjectMeta, default_ttl: float, now: float) -> float | None:
    """Seconds the object stays fresh from `now`; 0: revalidate every time; None: not to be
    stored at all."""
    directives: dict[str, int | None] = {}
    for part in (meta.cache_control or "").split(","):
        match = _DIRECTIVE.fullmatch(part)
        if match is not None:
            name, value = match.group(1).lower(), match.group(2)
            directives[name] = int(value) if value is not None else None
    if "no-store" in directives:
        return None
    if "no-cache" in directives:
        return 0.0
    for name in ("s-maxage", "max-age"):
        value = directives.get(name)
        if value is not None:
            return float(value)
    if meta.expires is not None:
        expires = parse_http_date(meta.expires)
        return max(0.0, expires.timestamp() - now) if expires is not None else 0.0
    return default_ttl
