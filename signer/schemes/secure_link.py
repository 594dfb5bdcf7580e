"""nginx `secure_link` links (MD5 with expiry), verified the way nginx verifies them.

An nginx in front of storage checks links with

    secure_link $arg_md5,$arg_expires;
    secure_link_md5 "$secure_link_expires$uri$remote_addr <secret>";

that is `/<path>?md5=<base64url MD5 of the expression>&expires=<unix seconds>`. The gateway's
keyring holds the expression as a `secure_link` key (the key's id names it in claims, logs and
revocations), and the gateway judges the link exactly as nginx would: the same `$uri` (decoded
and normalised), the same base64url reading, the same expiry (valid through the second
`expires`). What nginx would accept but the gateway refuses is listed in
docs/nginx-secure-link.md: links without an expiry, links living longer than
`max_link_lifetime`, argument names in another case or repeated, paths that are not UTF-8.
Parsing is pure; `verify` needs the keyring and the clock. Standard library only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from signer.addresses import IPAddress, IPNetwork, unmapped
from signer.errors import Reason, Rejected
from signer.format import MAX_TIME, METHODS, Claims, check_path
from signer.keys import Key, Keyring, LinkScheme, Status
from signer.nginx import (
    EXPIRES,
    REMOTE_ADDR,
    URI,
    Expression,
    decode_md5,
    normalize_uri,
    parse_expires,
    parse_expression,
)
from signer.schemes.base import MAX_LINK_LIFETIME, LinkRequest, SchemeLink, unstated_issue
from signer.verify import DEFAULT_SKEW, Verified, judge, token_id

NAME: Final = "secure_link"
#: The query arguments, as in nginx's documented `secure_link $arg_md5,$arg_expires`: fixed
#: (and in this case only), so that a link is recognised before any keyring is consulted.
MD5_ARG: Final = "md5"
EXPIRES_ARG: Final = "expires"

_MD5: Final = re.compile(r"(?:^|&)md5=")
_EXPIRES: Final = re.compile(r"(?:^|&)expires=")
_TARGET: Final = re.compile(r"[\x21-\x7e]*")
_ARGS: Final = frozenset({MD5_ARG, EXPIRES_ARG})


@dataclass(frozen=True, slots=True)
class SecureLink:
    """A well-formed secure_link target, not yet checked against any key or clock."""

    path: str  # nginx's $uri: the object path
    md5: bytes = field(repr=False)  # the 16 bytes the md5 argument reads as
    expires_text: str  # $secure_link_expires: the argument exactly as sent
    expires: int  # its value: the link is valid through this second

    @property
    def token_id(self) -> str:
        """From the 16 bytes read, so every spelling nginx accepts is the one link."""
        return token_id(self.md5)

    @property
    def expiry(self) -> int:
        """The claims' `expires`: the first second the link is refused (nginx: expires < now)."""
        return self.expires + 1


def detects(raw_query: str) -> bool:
    """A query with both an `md5=` and an `expires=` argument (in exactly this case) is a
    secure_link link, whether or not the rest is well formed. Our own token's `Expires` is
    spelled otherwise, so our links may carry an `md5` parameter of their own."""
    return _MD5.search(raw_query) is not None and _EXPIRES.search(raw_query) is not None


def parse(raw_path: str, raw_query: str) -> SecureLink:
    """Read the target as nginx would, or raise `Rejected(MALFORMED)` naming what is wrong
    (where nginx answers 400, or its `$secure_link` is empty before any hash is computed)."""
    if not _TARGET.fullmatch(raw_path) or not _TARGET.fullmatch(raw_query):
        raise _malformed("the request target has characters outside visible ASCII")
    values: dict[str, str] = {}
    for part in raw_query.split("&"):
        name, equals, value = part.partition("=")
        if not equals:
            continue  # nginx reads only `name=value` arguments; so does the gateway
        if name.lower() in _ARGS:
            if name not in _ARGS:
                raise _malformed(f"{name} must be spelled {name.lower()}")
            if name in values:
                raise _malformed(f"{name} is repeated")
            values[name] = value
    if MD5_ARG not in values or EXPIRES_ARG not in values:
        raise _malformed("a secure_link link has both md5 and expires")
    md5 = decode_md5(values[MD5_ARG])
    if md5 is None:
        raise _malformed("md5 is not the base64url of 16 bytes (22 characters) nginx reads")
    expires = parse_expires(values[EXPIRES_ARG])
    if expires is None:
        raise _malformed("expires is not a positive number of unix seconds")
    uri = normalize_uri(raw_path)
    if uri is None:
        raise _malformed("nginx refuses this path (400): '..' above the root or a bad escape")
    try:
        path = uri.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the decoded path is not UTF-8") from None
    return SecureLink(check_path(path), md5, values[EXPIRES_ARG], expires)


def hashed(expression: Expression, link: SecureLink, client: IPAddress | None) -> bytes | None:
    """The bytes nginx hashes for this link under `expression`; None when the expression
    hashes `$remote_addr` and the client's address is unknown."""
    return (
        expression.evaluate(_values(expression, link, client))
        if _known(expression, client)
        else None
    )


def verify(
    keyring: Keyring, request: LinkRequest, *, now: float | None = None, skew: float = DEFAULT_SKEW
) -> SchemeLink:
    """Accept the link or raise `Rejected` with its reason: the format first, then the MD5
    against each `secure_link` key in keyring order, and only then the time. nginx allows no
    clock skew, so neither does this (`skew` is not used)."""
    link = parse(request.raw_path, request.raw_query)
    if request.method not in METHODS:
        raise _malformed(f"a secure_link link is for {', '.join(METHODS)}")
    keys = [key for key in keyring if key.scheme is LinkScheme.SECURE_LINK]
    if not any(key.status is not Status.RETIRED for key in keys):
        raise Rejected(Reason.UNKNOWN_KEY, "no secure_link key in the keyring: such links are off")
    key = _matching(keys, link, request.client_ip)
    if key.status is Status.RETIRED:
        raise Rejected(Reason.RETIRED_KEY, f"key {key.id!r} is retired")
    current = time.time() if now is None else now
    if link.expiry > MAX_TIME:
        raise Rejected(Reason.LIFETIME_EXCEEDED, f"expires {link.expires} is beyond any lifetime")
    ip = _binding(_expression(key), request.client_ip)
    claims = unstated_issue(  # the link carries no issue time
        link.expiry,
        request.lifetime,
        lambda issued: Claims(expires=link.expiry, key_id=key.id, issued=issued, ip=ip).validate(),
        now=current,
        skew=0,
    )
    judge(
        claims, link.path, method=request.method, client_ip=request.client_ip, now=current, skew=0
    )
    verified = Verified(path=link.path, claims=claims, token_id=link.token_id)
    return SchemeLink(verified, issued_from=MAX_LINK_LIFETIME)


def explain(request: LinkRequest) -> list[str]:
    """What nginx reads from the link: the parts its hash covers, never the md5 itself."""
    link = parse(request.raw_path, request.raw_query)
    moment = datetime.fromtimestamp(min(link.expires, MAX_TIME), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"$secure_link_expires is {link.expires_text!r} (valid through {moment})",
        f"$uri (the path as nginx decodes and normalises it) is {link.path!r}",
    ]
    if request.client_ip is not None:
        lines.append(f"$remote_addr is {_address(request.client_ip)!r}")
    return lines


def explain_keys(keyring: Keyring, request: LinkRequest) -> list[str]:
    """For each `secure_link` key, the string it hashes for this link, every literal character
    (the secret's) shown as `*`: to compare with what the backend hashed."""
    link = parse(request.raw_path, request.raw_query)
    lines = []
    for key in keyring:
        if key.scheme is not LinkScheme.SECURE_LINK or key.expression is None:
            continue
        expression = _expression(key)
        if not _known(expression, request.client_ip):
            lines.append(f"key {key.id!r} hashes $remote_addr: give --client-ip")
            continue
        text = expression.masked(_values(expression, link, request.client_ip))
        lines += [f"key {key.id!r} hashed (between the lines):", "---", text, "---"]
    return lines


class SecureLinkScheme:
    """The `secure_link` entry of the scheme registry (`signer.schemes`)."""

    name = NAME
    detected_by = (MD5_ARG,)  # not `expires`: in any case, every link of ours has it

    def detects(self, raw_query: str) -> bool:
        return detects(raw_query)

    def carried(self, header: Callable[[str], Sequence[str]]) -> bool:
        return False  # nginx reads its arguments from the query only

    def verify(
        self, keyring: Keyring, request: LinkRequest, *, now: float | None, skew: float
    ) -> SchemeLink:
        return verify(keyring, request, now=now, skew=skew)

    def explain(self, request: LinkRequest) -> list[str]:
        return explain(request)

    def revocation(self, raw_path: str, raw_query: str) -> tuple[str, int]:
        link = parse(raw_path, raw_query)
        return link.token_id, min(link.expiry, MAX_TIME)

    def words(self, reason: str) -> str | None:
        return None  # nginx answers with a status alone (whatever its configuration returns)


SECURE_LINK: Final = SecureLinkScheme()


def _matching(keys: list[Key], link: SecureLink, client: IPAddress | None) -> Key:
    """The first key whose expression hashes to the link's md5 (retired keys too, when their
    expression is still known, to say so)."""
    unknown_client = False
    for key in keys:
        if key.expression is None:
            continue
        data = hashed(_expression(key), link, client)
        if data is None:
            unknown_client = True
            continue
        if hmac.compare_digest(hashlib.md5(data, usedforsecurity=False).digest(), link.md5):
            return key
    if unknown_client:
        detail = "the client's address is unknown, and an expression hashes $remote_addr"
        raise Rejected(Reason.IP_MISMATCH, detail)
    raise Rejected(Reason.BAD_SIGNATURE, "the md5 matches no secure_link key's expression")


def _expression(key: Key) -> Expression:
    assert key.expression is not None
    return parse_expression(key.expression)  # validated when the keyring loaded; cached


def _known(expression: Expression, client: IPAddress | None) -> bool:
    return client is not None or not expression.uses(REMOTE_ADDR)


def _values(expression: Expression, link: SecureLink, client: IPAddress | None) -> dict[str, str]:
    values = {EXPIRES: link.expires_text, URI: link.path}
    if client is not None:
        values[REMOTE_ADDR] = _address(client)
    return values


def _address(client: IPAddress) -> str:
    """`$remote_addr` as nginx writes it: IPv4 dotted, IPv6 compressed (RFC 5952)."""
    return str(unmapped(client))


def _binding(expression: Expression, client: IPAddress | None) -> IPNetwork | None:
    """The IP binding the claims record: the client's own address when it is hashed."""
    if client is None or not expression.uses(REMOTE_ADDR):
        return None
    return _host(unmapped(client))


@functools.lru_cache(maxsize=4096)
def _host(address: IPAddress) -> IPNetwork:
    """The one-address network (cached: building one parses text, and clients come back)."""
    return ipaddress.ip_network(address)


def _malformed(detail: str) -> Rejected:
    return Rejected(Reason.MALFORMED, detail)
