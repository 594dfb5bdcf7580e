"""The token format in code. `docs/token-format.md` is its normative text; keep them in step.

A signed link is a request target whose query ends with a token block:

    /videos/a%20b.mp4?app=1&Expires=1767225600&KeyID=k1&Issued=1767139200&Signature=...

The same token may instead travel in the path form (for players that resolve relative URIs):

    /token=<base64url of the query above>/videos/a%20b.mp4

Everything here is pure: no keys, no clock, no I/O. `parse_link` turns a raw request target (in
either form) into a `Link` (claims, decoded path, signature, and the exact bytes that were
signed) or raises `Rejected(MALFORMED | MISSING)`; `encode_claims`, `string_to_sign` and
`path_form` are the signing half.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

from signer.addresses import IPNetwork
from signer.errors import Reason, Rejected

FORMAT_VERSION: Final = "1.1.0"
SIGNING_LABEL: Final = b"EDGE-TOKEN-V1\n"

#: Token parameters, in the only order they may appear. `Signature` is always last.
PARAM_ORDER: Final = (
    "Expires",
    "KeyID",
    "Issued",
    "Starts",
    "IP",
    "Prefix",
    "Method",
    "Sub",
    "ResponseContentType",
    "ResponseContentDisposition",
    "ContentType",
    "MinBytes",
    "MaxBytes",
    "NoOverwrite",
    "OneTime",
    "Signature",
)
_RANK: Final = {name: i for i, name in enumerate(PARAM_ORDER)}
_FOLDED: Final = frozenset(name.casefold() for name in PARAM_ORDER)
_UPLOAD_ONLY: Final = ("ContentType", "MinBytes", "MaxBytes", "NoOverwrite", "OneTime")

METHODS: Final = ("GET", "HEAD", "PUT")
MAX_TIME: Final = 10**12 - 1
MAX_BYTES: Final = 2**63 - 1
MAX_SUB_LENGTH: Final = 256
MAX_RESPONSE_HEADER_LENGTH: Final = 512

#: The first path segment of the path form starts with this. A canonical object path never
#: holds a raw '=', so no object name can be mistaken for it.
PATH_FORM_MARKER: Final = "token="
_PATH_FORM_START: Final = "/" + PATH_FORM_MARKER

_TIME = re.compile(r"0|[1-9][0-9]{0,11}")
_COUNT = re.compile(r"0|[1-9][0-9]{0,18}")
KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the keyring uses the same rule
_MIME_TOKEN = r"[a-z0-9!#$&^_.+-]+"  # noqa: S105 (an RFC 9110 token, not a password)
_CONTENT_TYPE = re.compile(rf"{_MIME_TOKEN}/(?:{_MIME_TOKEN})?")
_TARGET = re.compile(r"[\x21-\x7e]*")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_PLAIN = re.compile(r"[A-Za-z0-9\-._~/:@]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Response header overrides (RFC 9110 media type, RFC 6266 disposition): tokens and parameters,
# printable ASCII only, so a value can never split or extend a header.
_TCHAR = r"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_HEADER_PARAM = rf"[ \t]*;[ \t]*{_TCHAR}+=(?:{_TCHAR}+|\"[\x20\x21\x23-\x5b\x5d-\x7e]*\")"
_RESPONSE_TYPE = re.compile(rf"{_TCHAR}+/{_TCHAR}+(?:{_HEADER_PARAM})*")
_DISPOSITION = re.compile(rf"{_TCHAR}+(?:{_HEADER_PARAM})*")


def valid_sub(sub: str) -> bool:
    """A `Sub`: 1-256 characters, none of them a control character."""
    return 0 < len(sub) <= MAX_SUB_LENGTH and not _CONTROL.search(sub)


def canonical(text: str) -> str:
    """Percent-encode `text` the one way the format allows.

    UTF-8, upper-case hex, every byte escaped except A-Z a-z 0-9 `-._~` and `/:@`.
    Raises UnicodeEncodeError for text that is not valid Unicode (lone surrogates).
    """
    return quote(text, safe="/:@", encoding="utf-8", errors="strict")


def decode(raw: str, what: str) -> str:
    """Decode a percent-encoded component once, insisting it was canonically encoded.

    Rejecting rather than normalising means no two different byte strings on the wire can
    stand for the same signed value.
    """
    if _PLAIN.fullmatch(raw):
        return raw  # nothing escaped and nothing that needs escaping: already canonical
    try:
        text = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _malformed(f"{what} is not valid UTF-8 after percent-decoding") from None
    if canonical(text) != raw:
        raise _malformed(f"{what} is not in canonical percent-encoding")
    return text


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Strict base64url without padding; non-canonical encodings (stray low bits) are refused."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise _malformed(f"{what} is not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not base64url without padding") from None
    if b64encode(data) != text:
        raise _malformed(f"{what} is not canonical base64url")
    return data


def check_path(path: str, what: str = "path") -> str:
    """A decoded object path: '/' and one or more non-empty segments, none '.' or '..', no NUL."""
    if not path.startswith("/") or path == "/":
        raise _malformed(f"{what} must start with '/' and name an object")
    for segment in path[1:].split("/"):
        if segment in ("", ".", ".."):
            raise _malformed(f"{what} has an empty, '.' or '..' segment")
    if "\x00" in path:
        raise _malformed(f"{what} contains NUL")
    return path


def check_prefix(prefix: str) -> str:
    """A decoded prefix: '/' alone, or a path ending in '/' (so it ends on a segment boundary)."""
    if prefix == "/":
        return prefix
    if not prefix.endswith("/"):
        raise _malformed("Prefix must end with '/'")
    check_path(prefix[:-1], "Prefix")
    return prefix


IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


@functools.lru_cache(maxsize=4096)
def canonical_ip(value: str) -> IPNetwork:
    """Parse an IP binding: an address, or a network with no host bits set.

    Cached: parsing dominates verification cost, and a fleet sees few distinct bindings.
    """
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise _malformed("IP is not an address or a network without host bits") from None
    if network.version == 6 and network.subnet_of(IPV4_MAPPED):
        # A client's IPv4-mapped address is compared as IPv4, so such a binding could never
        # match: refuse it rather than silently normalise it.
        raise _malformed("IP is an IPv4-mapped IPv6 network; write it as IPv4")
    if format_ip(network) != value:
        raise _malformed("IP is not written canonically")
    return network


def format_ip(network: IPNetwork) -> str:
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def under_prefix(path: str, prefix: str) -> bool:
    """True when `path` lies under `prefix`; both decoded, the prefix ending in '/'."""
    return path.startswith(prefix)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token says. Field order follows `PARAM_ORDER`."""

    expires: int
    key_id: str
    issued: int
    starts: int | None = None
    ip: IPNetwork | None = None
    prefix: str | None = None
    method: str | None = None
    sub: str | None = None
    response_content_type: str | None = None
    response_content_disposition: str | None = None
    content_type: str | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    no_overwrite: bool = False
    one_time: bool = False

    def validate(self) -> Claims:
        """Check the cross-field rules; raise Rejected(MALFORMED) naming the broken one."""
        for name, value in (("Expires", self.expires), ("Issued", self.issued)):
            if not 0 <= value <= MAX_TIME:
                raise _malformed(f"{name} is out of range")
        if not KEY_ID.fullmatch(self.key_id):
            raise _malformed("KeyID must be 1-64 of A-Z a-z 0-9 . _ -")
        if self.issued >= self.expires:
            raise _malformed("Issued must be before Expires")
        if self.starts is not None and not 0 <= self.starts < self.expires:
            raise _malformed("Starts must be before Expires")
        if self.prefix is not None:
            check_prefix(self.prefix)
        if self.method is not None and self.method not in METHODS:
            raise _malformed("Method must be one of GET, HEAD, PUT")
        if self.sub is not None and not valid_sub(self.sub):
            raise _malformed("Sub must be 1-256 characters without control characters")
        for name, header, pattern in (
            ("ResponseContentType", self.response_content_type, _RESPONSE_TYPE),
            ("ResponseContentDisposition", self.response_content_disposition, _DISPOSITION),
        ):
            if header is not None and (
                len(header) > MAX_RESPONSE_HEADER_LENGTH or not pattern.fullmatch(header)
            ):
                raise _malformed(f"{name} is not a valid header value (see the format document)")
        if self.method == "PUT" and self.has_response_overrides:
            raise _malformed("response overrides need a reading Method (GET or HEAD)")
        if self.content_type is not None and not _CONTENT_TYPE.fullmatch(self.content_type):
            raise _malformed("ContentType must be a lower-case type/subtype or type/")
        for name, count in (("MinBytes", self.min_bytes), ("MaxBytes", self.max_bytes)):
            if count is not None and not 0 <= count <= MAX_BYTES:
                raise _malformed(f"{name} is out of range")
        if (
            self.min_bytes is not None
            and self.max_bytes is not None
            and self.min_bytes > self.max_bytes
        ):
            raise _malformed("MinBytes must not exceed MaxBytes")
        if self.method != "PUT" and self.has_upload_constraints:
            raise _malformed("upload constraints need Method=PUT")
        return self

    @property
    def has_response_overrides(self) -> bool:
        return self.response_content_type is not None or (
            self.response_content_disposition is not None
        )

    @property
    def has_upload_constraints(self) -> bool:
        return (
            self.content_type is not None
            or self.min_bytes is not None
            or self.max_bytes is not None
            or self.no_overwrite
            or self.one_time
        )

    def allows_method(self, method: str) -> bool:
        """GET and HEAD when unbound; GET also allows HEAD (it reveals less)."""
        bound = self.method or "GET"
        return method == bound or (bound == "GET" and method == "HEAD")


def encode_claims(claims: Claims) -> str:
    """The token block without its Signature, exactly as it goes on the wire."""
    claims.validate()
    parts = [f"Expires={claims.expires}", f"KeyID={claims.key_id}", f"Issued={claims.issued}"]
    if claims.starts is not None:
        parts.append(f"Starts={claims.starts}")
    if claims.ip is not None:
        parts.append(f"IP={format_ip(claims.ip)}")
    if claims.prefix is not None:
        parts.append(f"Prefix={canonical(claims.prefix)}")
    if claims.method is not None:
        parts.append(f"Method={claims.method}")
    if claims.sub is not None:
        parts.append(f"Sub={canonical(claims.sub)}")
    if claims.response_content_type is not None:
        parts.append(f"ResponseContentType={canonical(claims.response_content_type)}")
    if claims.response_content_disposition is not None:
        disposition = canonical(claims.response_content_disposition)
        parts.append(f"ResponseContentDisposition={disposition}")
    if claims.content_type is not None:
        parts.append(f"ContentType={canonical(claims.content_type)}")
    if claims.min_bytes is not None:
        parts.append(f"MinBytes={claims.min_bytes}")
    if claims.max_bytes is not None:
        parts.append(f"MaxBytes={claims.max_bytes}")
    if claims.no_overwrite:
        parts.append("NoOverwrite=1")
    if claims.one_time:
        parts.append("OneTime=1")
    return "&".join(parts)


def string_to_sign(raw_path: str, signed_query: str, *, prefixed: bool) -> bytes:
    """The exact bytes a signature covers.

    LABEL, then the raw (canonical) path unless the token carries a Prefix, a newline, then the
    raw query up to but excluding '&Signature='.
    """
    path = "" if prefixed else raw_path
    return b"%s%s\n%s" % (SIGNING_LABEL, path.encode("ascii"), signed_query.encode("ascii"))


@dataclass(frozen=True, slots=True)
class Link:
    """A well-formed signed request target, not yet checked against any key or clock."""

    path: str
    claims: Claims
    signature: bytes
    signed: bytes


def is_path_form(raw_path: str) -> bool:
    """Whether a raw request path carries its token in the path form."""
    return raw_path.startswith(_PATH_FORM_START)


def encode_payload(query: str) -> str:
    """The token outside the query (path form, cookie): base64url of the whole signed query."""
    return b64encode(query.encode("ascii"))


def decode_payload(payload: str, what: str) -> str:
    """The signed query back from `encode_payload`'s text; strict, like every decoder here."""
    data = b64decode(payload, what)
    if not data:
        raise _malformed(f"{what} is empty")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise _malformed(f"{what} does not decode to ASCII") from None


def path_form(target: str) -> str:
    """Move a signed query-form target (`/path?...&Signature=...`) into the path form."""
    raw_path, _, query = target.partition("?")
    return f"{_PATH_FORM_START}{encode_payload(query)}{raw_path}"


#: A path segment that reads `token=` in any case, each character possibly percent-encoded.
_TOKEN_SEGMENT: Final = re.compile(
    r"/((?:t|%[57]4)(?:o|%[46]f)(?:k|%[46]b)(?:e|%[46]5)(?:n|%[46]e)(?:=|%3d))[^/]*",
    re.IGNORECASE,
)


def strip_path_token(raw_path: str) -> str:
    """The raw path for logs, with the value of every segment that reads `token=` replaced:
    not only the path form's own segment, since a refused `/TOKEN=…/` or a second
    `/token=…/` segment carries a bearer token just the same."""
    if "=" not in raw_path and "%" not in raw_path:
        return raw_path
    return _TOKEN_SEGMENT.sub(r"/\1<redacted>", raw_path)


def parse_link(raw_path: str, raw_query: str) -> Link:
    """Split and validate a raw request target (as received, still percent-encoded).

    The target is in the query form, or in the path form (`/token=<payload>/path`, no query).
    """
    carried = is_path_form(raw_path)
    if carried:
        raw_path, raw_query = _unwrap_path_form(raw_path, raw_query)
    if not _TARGET.fullmatch(raw_path) or not _TARGET.fullmatch(raw_query):
        raise _malformed("the request target has characters outside visible ASCII")
    path = check_path(decode(raw_path, "path"))
    start = _block_start(raw_query)
    if start < 0:
        if raw_query:
            check_app_query(raw_query)
        if carried:
            raise _malformed("the path token holds no token block")
        raise Rejected(Reason.MISSING)
    if start:
        check_app_query(raw_query[: start - 1])
    values = _token_block(raw_query[start:])
    signature_b64 = values.pop("Signature")
    claims = _claims(values)
    signature = b64decode(signature_b64, "Signature")
    signed_query = raw_query[: len(raw_query) - len(signature_b64) - len("&Signature=")]
    signed = string_to_sign(raw_path, signed_query, prefixed=claims.prefix is not None)
    return Link(path=path, claims=claims, signature=signature, signed=signed)


def has_token(raw_query: str) -> bool:
    """Whether a raw query carries a token block (well formed or not): then it is the token."""
    return _block_start(raw_query) >= 0


def unverified_prefix_covers(raw_path: str, raw_query: str) -> bool:
    """Whether the token in `raw_query` is well formed and claims a `Prefix` covering `raw_path`.

    UNVERIFIED: anyone can write any Prefix. Only for ordering several presented tokens so that
    the likeliest is verified first; never for a decision.
    """
    try:
        link = parse_link(raw_path, raw_query)
    except Rejected:
        return False
    prefix = link.claims.prefix
    return prefix is not None and under_prefix(link.path, prefix)


def _block_start(raw_query: str) -> int:
    """Where the token block (`Expires=`) starts in a raw query, or -1."""
    if raw_query.startswith("Expires="):
        return 0
    found = raw_query.find("&Expires=")
    return found + 1 if found >= 0 else -1


def _unwrap_path_form(raw_path: str, raw_query: str) -> tuple[str, str]:
    segment, slash, rest = raw_path[1:].partition("/")
    if not slash:
        raise _malformed("the path form needs an object path after the token segment")
    if raw_query:
        raise _malformed("a path-form target must not have a query (it would not be signed)")
    payload = segment[len(PATH_FORM_MARKER) :]
    return "/" + rest, decode_payload(payload, "the path token")


def check_app_query(app_query: str) -> None:
    """Application parameters: visible ASCII, none empty, none a token name in any spelling."""
    if not _TARGET.fullmatch(app_query):
        raise _malformed("the query has characters outside visible ASCII")
    for part in app_query.split("&"):
        if not part:
            raise _malformed("the query has an empty parameter")
        name = part.partition("=")[0]
        if unquote(name).casefold() in _FOLDED:
            raise _malformed(f"token parameter {name!r} outside the token block or out of order")


def _token_block(block: str) -> dict[str, str]:
    values: dict[str, str] = {}
    last = -1
    for part in block.split("&"):
        name, eq, value = part.partition("=")
        rank = _RANK.get(name)
        if not eq or rank is None:
            raise _malformed(
                "unknown parameter inside the token block "
                "(application parameters go before Expires)"
            )
        if rank <= last:
            raise _malformed(f"{name} is repeated or out of order")
        last = rank
        values[name] = value
    if "Signature" not in values:
        raise _malformed("Signature is missing or not last")
    for required in ("KeyID", "Issued"):
        if required not in values:
            raise _malformed(f"{required} is missing")
    return values


def _claims(values: dict[str, str]) -> Claims:
    ip = values.get("IP")
    prefix = values.get("Prefix")
    sub = values.get("Sub")
    response_type = values.get("ResponseContentType")
    disposition = values.get("ResponseContentDisposition")
    content_type = values.get("ContentType")
    for flag in ("NoOverwrite", "OneTime"):
        if flag in values and values[flag] != "1":
            raise _malformed(f"{flag} must be 1 when present")
    return Claims(
        expires=_int(values, "Expires", _TIME),
        key_id=values["KeyID"],
        issued=_int(values, "Issued", _TIME),
        starts=_int(values, "Starts", _TIME) if "Starts" in values else None,
        ip=canonical_ip(ip) if ip is not None else None,
        prefix=decode(prefix, "Prefix") if prefix is not None else None,
        method=values.get("Method"),
        sub=decode(sub, "Sub") if sub is not None else None,
        response_content_type=(
            decode(response_type, "ResponseContentType") if response_type is not None else None
        ),
        response_content_disposition=(
            decode(disposition, "ResponseContentDisposition") if disposition is not None else None
        ),
        content_type=decode(content_type, "ContentType") if content_type is not None else None,
        min_bytes=_int(values, "MinBytes", _COUNT) if "MinBytes" in values else None,
        max_bytes=_int(values, "MaxBytes", _COUNT) if "MaxBytes" in values else None,
        no_overwrite="NoOverwrite" in values,
        one_time="OneTime" in values,
    ).validate()


def _int(values: dict[str, str], name: str, pattern: re.Pattern[str]) -> int:
    text = values[name]
    if not pattern.fullmatch(text):
        raise _malformed(f"{name} must be a decimal integer without sign or leading zeros")
    return int(text)


def _malformed(detail: str) -> Rejected:
    return Rejected(Reason.MALFORMED, detail)
