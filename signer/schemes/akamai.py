"""Akamai EdgeAuth 2.0 tokens (Auth Token 2.0), verified the way Akamai's edge verifies them.

A backend makes them with Akamai's EdgeAuth (`akamai-edgeauth` on PyPI, or its siblings in
other languages), holding an `akamai` key of the gateway's keyring (its hex key, as Akamai's):

    [ip=<ip>~][st=<start>~]exp=<end>[~acl=<acl>[!<acl>...]][~id=<id>][~data=<data>]~hmac=<hex>

in the query as `__token__=<token>`, or in a cookie or header named `hdnts`. The HMAC (SHA-256,
SHA-1 or MD5, the key's) covers the token up to `~hmac=`, plus `~url=<path>` for a token
without `acl`: that one is for exactly the path it was made for. `escape_early` (the key's,
Akamai's "Escape token inputs") means `ip`, `id`, `data` and the signed url were written with
`quote_plus` and lower-case escapes. An acl covers the paths it matches, `*` matching any run of
characters, `/` included. The token names no key: every akamai key that is not retired is tried
(at most `MAX_AKAMAI_KEYS`, constant time each). Parsing is pure; `verify` needs the keyring and
the clock. Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote_plus, unquote_plus

from signer.errors import Reason, Rejected
from signer.format import Claims, check_path, check_prefix, decode
from signer.keys import DEFAULT_AKAMAI_WINDOW, Key, Keyring, LinkScheme, Status
from signer.schemes.base import LinkRequest, SchemeLink, unstated_issue
from signer.verify import DEFAULT_SKEW, Verified, judge, token_id

NAME: Final = "akamai"
#: Where the token travels: Akamai's default query parameter, and the cookie or header name of
#: its media products. Fixed, not per key: a link is detected before any key is looked at.
QUERY_NAME: Final = "__token__"
CARRIED_NAME: Final = "hdnts"
#: EdgeAuth's fields, in the order it writes them; `hmac` last.
FIELDS: Final = ("ip", "st", "exp", "acl", "id", "data", "hmac")
DIGESTS: Final = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "md5": hashlib.md5}
#: The digest a hmac's length names (hex digits): what a token can be checked with.
DIGEST_BY_LENGTH: Final = {64: "sha256", 40: "sha1", 32: "md5"}
#: What a token without `st` is counted as issued from (`signer.schemes.base.unstated_issue`):
#: Akamai's own notion, the key's window (EdgeAuth's `window_seconds`), not max_link_lifetime.
KEY_WINDOW: Final = "the key's window"
MAX_TOKEN_LENGTH: Final = 4096
MAX_ACLS: Final = 16

_DETECT: Final = re.compile(rf"(?:^|&){QUERY_NAME}=")
_TOKEN_TEXT: Final = re.compile(r"[\x21-\x7e]+")
_TIME: Final = re.compile(r"[1-9][0-9]{0,11}")
_HMAC: Final = re.compile(r"[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}")
_RANK: Final = {name: rank for rank, name in enumerate(FIELDS)}
_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")


@dataclass(frozen=True, slots=True)
class Token:
    """A well-formed token, not yet checked against any key, path or clock. Values are as the
    token writes them (escaped when the key escapes early)."""

    signed: str  # the token up to `~hmac=`: what the HMAC covers (then `~url=` for url tokens)
    exp: int
    hmac: str  # lower-case hex
    st: int | None = None
    ip: str | None = None
    acl: tuple[str, ...] | None = None
    id: str | None = None
    data: str | None = None

    @property
    def digest(self) -> str:
        return DIGEST_BY_LENGTH[len(self.hmac)]

    @property
    def token_id(self) -> str:
        return token_id(bytes.fromhex(self.hmac))


def detects(raw_query: str) -> bool:
    """A query naming `__token__` carries an Akamai token, well formed or not."""
    return _DETECT.search(raw_query) is not None


def carried(header: Callable[[str], Sequence[str]]) -> bool:
    """Whether an `hdnts` cookie or header came."""
    return bool(header(CARRIED_NAME)) or any(True for _ in _cookies(header("Cookie")))


def parse_token(text: str) -> Token:
    """Split and validate a token as received, or raise `Rejected(MALFORMED)` naming the field."""
    if len(text) > MAX_TOKEN_LENGTH or not _TOKEN_TEXT.fullmatch(text):
        raise _malformed(f"the token must be 1 to {MAX_TOKEN_LENGTH} visible ASCII characters")
    values: dict[str, str] = {}
    last = -1
    for part in text.split("~"):
        name, equals, value = part.partition("=")
        rank = _RANK.get(name)
        if not equals or rank is None:
            if name in ("url", "salt"):
                raise _malformed(f"{name}= is never in a token (EdgeAuth signs it, unsent)")
            raise _malformed(f"{part[:16]!r} is not a field of an EdgeAuth token")
        if rank <= last:
            raise _malformed(f"{name} is repeated or out of EdgeAuth's order ({', '.join(FIELDS)})")
        if not value:
            raise _malformed(f"{name} is empty")
        last = rank
        values[name] = value
    signature = values.get("hmac")
    if signature is None:
        raise _malformed("hmac is missing (it must be the last field)")
    if not _HMAC.fullmatch(signature):
        raise _malformed("hmac must be 64, 40 or 32 lower-case hex digits (SHA-256, SHA-1, MD5)")
    if "exp" not in values:
        raise _malformed("exp is missing")
    exp = _time(values["exp"], "exp")
    st = _time(values["st"], "st") if "st" in values else None
    if st is not None and st >= exp:
        raise _malformed("st must be before exp")
    acl = values.get("acl")
    return Token(
        signed=text[: len(text) - len(signature) - len("~hmac=")],
        exp=exp,
        hmac=signature,
        st=st,
        ip=values.get("ip"),
        acl=None if acl is None else _acls(acl),
        id=values.get("id"),
        data=values.get("data"),
    )


def acl_covers(acl: str, raw_path: str) -> bool:
    """Whether `acl` matches the whole path, `*` standing for any run of characters (`/` too).
    Leftmost matching of each literal piece is exact for a pattern whose only wildcard is `*`."""
    pieces = acl.split("*")
    if len(pieces) == 1:
        return acl == raw_path
    first, *middle, last = pieces
    end = len(raw_path) - len(last)
    if end < len(first) or not raw_path.startswith(first) or not raw_path.endswith(last):
        return False
    position = len(first)
    for piece in middle:
        found = raw_path.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def acl_prefix(acls: tuple[str, ...]) -> str | None:
    """The decoded `Prefix` one acl `/dir/*` is; None for acls a prefix cannot express (several,
    a `*` elsewhere, a prefix not ending on `/`), which `acl_covers` then decides alone."""
    if len(acls) != 1 or not acls[0].endswith("*") or "*" in acls[0][:-1]:
        return None
    try:
        return check_prefix(decode(acls[0][:-1], "acl"))
    except Rejected:
        return None


def escaped(text: str) -> str:
    """EdgeAuth's escape_early: `quote_plus`, then every escape in lower case."""
    return _ESCAPE.sub(lambda m: m.group().lower(), quote_plus(text))


def string_to_sign(token: Token, raw_path: str, *, escape_early: bool) -> str:
    """What the HMAC covers: the token before `~hmac=`, and for a url token `~url=<path>`, the
    path as the client sent it (escaped when the key escapes early)."""
    if token.acl is not None:
        return token.signed
    return f"{token.signed}~url={escaped(raw_path) if escape_early else raw_path}"


def expected_hmac(key: Key, token: Token, raw_path: str) -> str:
    assert key.secret is not None
    assert key.digest is not None
    text = string_to_sign(token, raw_path, escape_early=key.escape_early)
    return hmac.new(key.secret, text.encode(), DIGESTS[key.digest]).hexdigest()


def token_text(request: LinkRequest) -> str:
    """The one token a request carries: the query's `__token__` (then the only parameter), else
    the `hdnts` cookie or header (then no query); two different tokens are refused."""
    if detects(request.raw_query):
        query = request.raw_query
        if "&" in query or not query.startswith(f"{QUERY_NAME}="):
            raise _malformed(f"{QUERY_NAME} must be the only query parameter, and come once")
        return query[len(QUERY_NAME) + 1 :]
    sent = {*request.header(CARRIED_NAME), *_cookies(request.header("Cookie"))}
    if not sent:
        detail = f"no {QUERY_NAME} parameter, nor {CARRIED_NAME} cookie or header"
        raise Rejected(Reason.MISSING, detail)
    if len(sent) > 1:
        raise _malformed(f"more than one {CARRIED_NAME} token came (cookies, header)")
    if request.raw_query:
        raise _malformed(f"a request with an {CARRIED_NAME} token has no query")
    return sent.pop()


def verify(
    keyring: Keyring, request: LinkRequest, *, now: float | None = None, skew: float = DEFAULT_SKEW
) -> SchemeLink:
    """Accept the token or raise `Rejected` with its reason: the format and path first, then
    the keys, then the signature, and only then the claims (time, method, acl, ip)."""
    token = parse_token(token_text(request))
    path = check_path(decode(request.raw_path, "the path"))
    key = _signer(keyring, token, request.raw_path)
    if token.st is not None:
        claims = _claims(token, key, token.st)
    else:  # the one rule for a link without an issue time, with Akamai's own lifetime
        current = time.time() if now is None else now
        claims = unstated_issue(
            token.exp,
            _window(key),
            lambda issued: _claims(token, key, issued),
            now=current,
            skew=skew,
            bound=KEY_WINDOW,
        )
    judge(claims, path, method=request.method, client_ip=request.client_ip, now=now, skew=skew)
    if token.acl is not None and not any(acl_covers(acl, request.raw_path) for acl in token.acl):
        raise Rejected(Reason.OUTSIDE_PREFIX, "no acl of the token covers the path", claims)
    verified = Verified(path=path, claims=claims, token_id=token.token_id)
    return SchemeLink(verified, issued_from=None if token.st is not None else KEY_WINDOW)


def explain(request: LinkRequest) -> list[str]:
    """The token's fields and the string its HMAC covers, for each escape_early setting that
    changes it; never a key, nor the hmac itself."""
    token = parse_token(token_text(request))
    kind = "acl " + "!".join(token.acl) if token.acl is not None else "url (the path as sent)"
    lines = [f"a {token.digest} token for {kind}, fields as sent:", "---"]
    lines += token.signed.split("~")
    lines.append("---")
    plain = string_to_sign(token, request.raw_path, escape_early=False)
    early = string_to_sign(token, request.raw_path, escape_early=True)
    settings = [("", plain)] if plain == early else [(" (escape_early off)", plain)]
    if plain != early:
        settings.append((" (escape_early on)", early))
    for label, text in settings:
        lines += [f"the string the hmac covers{label}:", "---", text, "---"]
    lines.append(
        f"check that the backend used a {token.digest} key of the keyring, with its escape_early,"
    )
    lines.append("and (url tokens) signed the path exactly as it is sent, percent-encoded")
    return lines


def revocation(raw_path: str, raw_query: str) -> tuple[str, int]:
    token = parse_token(token_text(LinkRequest("GET", raw_path, raw_query)))
    return token.token_id, token.exp


class Akamai:
    """The `akamai` entry of the scheme registry (`signer.schemes`)."""

    name = NAME
    detected_by = (QUERY_NAME,)

    def detects(self, raw_query: str) -> bool:
        return detects(raw_query)

    def carried(self, header: Callable[[str], Sequence[str]]) -> bool:
        return carried(header)

    def verify(
        self, keyring: Keyring, request: LinkRequest, *, now: float | None, skew: float
    ) -> SchemeLink:
        return verify(keyring, request, now=now, skew=skew)

    def explain(self, request: LinkRequest) -> list[str]:
        return explain(request)

    def revocation(self, raw_path: str, raw_query: str) -> tuple[str, int]:
        return revocation(raw_path, raw_query)

    def words(self, reason: str) -> str | None:
        return None  # Akamai answers a bare 403: no words a client looks for


AKAMAI: Final = Akamai()


def _signer(keyring: Keyring, token: Token, raw_path: str) -> Key:
    """The akamai key whose HMAC the token carries: each usable key of the token's digest is
    tried, every one compared in constant time."""
    keys = [key for key in keyring if key.scheme is LinkScheme.AKAMAI]
    if not keys:
        raise Rejected(Reason.UNKNOWN_KEY, "no akamai key in the keyring: Akamai tokens are off")
    usable = [key for key in keys if key.status is not Status.RETIRED and key.secret is not None]
    if not usable:
        raise Rejected(Reason.RETIRED_KEY, "every akamai key of the keyring is retired")
    found = None
    for key in usable:
        if key.digest == token.digest and hmac.compare_digest(
            expected_hmac(key, token, raw_path), token.hmac
        ):
            found = found or key
    if found is None:
        if not any(key.digest == token.digest for key in usable):
            raise Rejected(Reason.BAD_SIGNATURE, f"no akamai key of the keyring is {token.digest}")
        raise Rejected(Reason.BAD_SIGNATURE)
    return found


def _claims(token: Token, key: Key, issued: int) -> Claims:
    """What an authentic token says, as our token would say it, issued at `issued`."""
    ip = None
    if token.ip is not None:
        text = _value(token.ip, key, "ip")
        try:
            ip = ipaddress.ip_network(ipaddress.ip_address(text))
        except ValueError:
            raise _malformed("ip is not one IPv4 or IPv6 address") from None
    return Claims(
        expires=token.exp,
        key_id=key.id,
        issued=issued,
        starts=token.st,
        ip=ip,
        prefix=None if token.acl is None else acl_prefix(token.acl),
        method="GET",
        sub=None if token.id is None else _value(token.id, key, "id"),
    ).validate()


def _window(key: Key) -> int:
    return DEFAULT_AKAMAI_WINDOW if key.window is None else key.window


def _value(raw: str, key: Key, name: str) -> str:
    """A field's text: unescaped when the key escapes early."""
    if not key.escape_early:
        return raw
    try:
        return unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise _malformed(f"{name} is not UTF-8 once unescaped") from None


def _acls(value: str) -> tuple[str, ...]:
    acls = tuple(value.split("!"))
    if len(acls) > MAX_ACLS:
        raise _malformed(f"acl lists more than {MAX_ACLS} paths")
    for acl in acls:
        if not acl.startswith("/"):
            raise _malformed("every acl starts with '/'")
        if "?" in acl:
            raise _malformed("acl wildcard '?' is not matched here; use '*'")
    return acls


def _cookies(headers: Sequence[str]) -> Iterator[str]:
    """Every `hdnts` cookie value, in the order sent (RFC 6265 quotes removed)."""
    for line in headers:
        for pair in line.split(";"):
            name, equals, value = pair.strip().partition("=")
            if equals and name == CARRIED_NAME:
                value = value.strip()
                if len(value) > 1 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                yield value


def _time(value: str, name: str) -> int:
    if not _TIME.fullmatch(value):
        raise _malformed(f"{name} must be unix seconds (no sign, no leading zero)")
    return int(value)


def _malformed(detail: str) -> Rejected:
    return Rejected(Reason.MALFORMED, detail)
