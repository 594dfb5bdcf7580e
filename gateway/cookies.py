"""The signed-cookie form: a valid Prefix token in the query hands the browser a cookie.

The cookie's value is the token's payload (base64url of the signed query, as in the path form),
so it is exactly as strong as the link: the gateway verifies it on every request with the same
expiry, IP, prefix and revocation checks (see `token_source`). Its attributes are secure by
default: `HttpOnly`, `Path` = the prefix, `SameSite` from settings, `Secure` when the request
came over TLS (or a trusted proxy says so), and a lifetime that ends with the token's.
"""

from __future__ import annotations

import ipaddress
import time

from gateway.client_address import TrustedProxies
from gateway.http_server import Request
from gateway.settings import Cookie
from gateway.token_source import COOKIE_NAME, Form, Presented
from signer.format import Claims, canonical, encode_payload
from signer.schemes import EDGE


class CookieIssuer:
    def __init__(self, settings: Cookie, proxies: TrustedProxies) -> None:
        self.enabled = settings.enabled
        self.same_site = settings.same_site
        self.secure = settings.secure
        self.proxies = proxies

    def set_cookie(self, request: Request, presented: Presented, claims: Claims) -> str | None:
        """The `Set-Cookie` value for a verified token, or None when no cookie is due."""
        if not self.enabled or presented.form is not Form.QUERY or claims.prefix is None:
            return None
        if presented.scheme != EDGE:  # another scheme's token is no EdgeToken payload
            return None
        return cookie_header(
            encode_payload(presented.raw_query),
            claims,
            same_site=self.same_site,
            secure=self._secure(request),
            now=time.time(),
        )

    def _secure(self, request: Request) -> bool:
        if self.secure is not None:
            return self.secure
        if request.secure:
            return True
        peer = request.peer
        try:
            trusted = peer is not None and self.proxies.trusts(ipaddress.ip_address(peer))
        except ValueError:
            trusted = False
        proto = request.headers.get("X-Forwarded-Proto", "").rpartition(",")[2].strip().lower()
        return trusted and proto == "https"


def cookie_header(payload: str, claims: Claims, *, same_site: str, secure: bool, now: float) -> str:
    assert claims.prefix is not None
    max_age = max(0, int(claims.expires - now))
    attributes = [
        f"{COOKIE_NAME}={payload}",
        f"Path={canonical(claims.prefix)}",
        f"Max-Age={max_age}",
        "HttpOnly",
        f"SameSite={same_site}",
    ]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)
