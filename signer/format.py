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

import dataclasses
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from signer.addresses import IPAddress, IPNetwork
from signer.errors import Reason, Rejected
from signer.params import (
    ANY,
    KEY_CODEC,
    PARAM_ORDER,
    PARAMS,
    READ,
    REQUIRED,
    TIME_CODEC,
    UPLOAD,
)
from signer.syntax import (
    B64_LAST,
    IPV4_MAPPED,
    KEY_ID,
    MAX_BYTES,
    MAX_RESPONSE_HEADER_LENGTH,
    MAX_SUB_LENGTH,
    MAX_TIME,
    METHODS,
    TIME,
    b64decode,
    b64encode,
    canonical,
    canonical_ip,
    check_key_id,
    check_path,
    check_prefix,
    decode,
    format_ip,
    from_b64url,
    malformed,
    under_prefix,
    valid_sub,
)

__all__ = [
    "FORMAT_VERSION",
    "IPV4_MAPPED",
    "KEY_ID",
    "MAX_BYTES",
    "MAX_RESPONSE_HEADER_LENGTH",
    "MAX_SUB_LENGTH",
    "MAX_TIME",
    "METHODS",
    "PARAM_ORDER",
    "PATH_FORM_MARKER",
    "SIGNATURE_LENGTHS",
    "SIGNING_LABEL",
    "Claims",
    "IPAddress",
    "IPNetwork",
    "Link",
    "b64decode",
    "b64encode",
    "canonical",
    "canonical_ip",
    "check_app_query",
    "check_path",
    "check_prefix",
    "decode",
    "decode_payload",
    "encode_claims",
    "encode_payload",
    "format_ip",
    "has_token",
    "is_path_form",
    "parse_link",
    "path_form",
    "resembles_token_parameter",
    "slot_setters",
    "string_to_sign",
    "strip_path_token",
    "under_prefix",
    "unverified_prefix_covers",
    "valid_sub",
]

FORMAT_VERSION: Final = "1.4.0"
SIGNING_LABEL: Final = b"EDGE-TOKEN-V1\n"

#: The first path segment of the path form starts with this. A canonical object path never
#: holds a raw '=', so no object name can be mistaken for it.
PATH_FORM_MARKER: Final = "token="
_PATH_FORM_START: Final = "/" + PATH_FORM_MARKER

#: What a Signature may decode to before its key is known: HMAC-SHA256 or Ed25519 (§2). That it
#: is the length of the key's own algorithm is checked after the key lookup (§6, step 4a).
SIGNATURE_LENGTHS: Final = frozenset((32, 64))

_RANK: Final = {name: i for i, name in enumerate(PARAM_ORDER)}
_LOWER_NAMES: Final = frozenset(name.lower() for name in PARAM_ORDER)
_ASCII_LOWER: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_TARGET = re.compile(r"[\x21-\x7e]*")
#: RFC 3986 query characters (pchar, "/", "?"), with a '%' only as the start of an escape.
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


#: One row of `_RULES`: field, name, absent value, check, rule, methods, required, restriction.
_Rule = tuple[
    str,
    str,
    Any,
    Callable[[Any, str], None],
    Callable[[Any], object] | None,
    frozenset[str] | None,
    bool,
    str,
]
#: What `Claims.validate` checks, row by row: the table's columns it needs, looked up once.
_RULES: Final[tuple[_Rule, ...]] = tuple(
    (
        p.field,
        p.name,
        p.codec.absent,
        p.codec.check,
        p.rule,
        None if p.methods is ANY else p.methods,
        p.required,
        p.restriction,
    )
    for p in PARAMS
)
#: How `_claims` reads each parameter, by name: its field, its codec's parser and its row of
#: `_RULES` (a parsed token is checked on the rows of what it carries: `_token_block` has seen
#: the required ones, and an absent parameter has nothing else to check).
_READERS: Final = {
    p.name: (p.field, p.codec.parse, rule) for p, rule in zip(PARAMS, _RULES, strict=True)
}


# --- the fast path ------------------------------------------------------------------------------
#
# `_parse_fast` reads a well-formed link with one regex match where `_parse` splits it and checks
# it piece by piece (measured with benchmarks/verify_cost.py, plain link: parse 10.6 -> 3.9 µs,
# verify 16.6 -> 6.6 µs). It only ever *accepts*: on anything it is not sure of, it gives up and
# `_parse` reads the link again the slow way, so every refusal keeps its reason and detail; and
# what it accepts, `_parse_slow` accepts with the same Link (tests/unit/test_parse_paths.py).

#: A query character (RFC 3986) other than '%' and '&'.
_QUERY_CHAR: Final = r"[A-Za-z0-9\-._~!$'()*+,;=:@/?]"
#: Query characters with a '%' only as the start of an escape, without '&': `_is_query` as a
#: pattern, for one value. Runs of a class between escapes, never given back: 0.8 µs for the
#: block of five bindings, against 2.2 µs with one alternative per character.
_VALUE: Final = f"{_QUERY_CHAR}*+(?:%[0-9A-Fa-f]{{2}}{_QUERY_CHAR}*+)*+"
#: The same with '&': the application parameters before the token block.
_APP_QUERY: Final = re.compile(_VALUE.replace("$'", "$&'"))
#: The canonical base64url text of 32 or 64 bytes (`b64decode`'s rules, `SIGNATURE_LENGTHS`).
_SIGNATURE: Final = "|".join(
    f"[A-Za-z0-9_-]{{{chars - 1}}}[{re.escape(''.join(sorted(B64_LAST[chars % 4])))}]"
    for chars in sorted((4 * n + 2) // 3 for n in SIGNATURE_LENGTHS)
)
#: The required parameters open the block, and their patterns leave nothing to their codecs'
#: checks and rules: a time of at most 12 digits is in range, KEY_ID is `check_key_id`'s rule.
_REQUIRED_ROWS: Final = (
    ("Expires", TIME_CODEC, None),
    ("KeyID", KEY_CODEC, check_key_id),
    ("Issued", TIME_CODEC, None),
)
if (
    PARAM_ORDER[:3] != REQUIRED
    or tuple((p.name, p.codec, p.rule) for p in PARAMS[:3]) != _REQUIRED_ROWS
):  # pragma: no cover - a change to the table that the fast path must learn first
    raise AssertionError("signer.format's fast path expects Expires, KeyID and Issued first")
#: A token block with exact required values and a signature of 32 or 64 bytes, the optional
#: parameters between them as one text of `&name=value` parts (their names and order are
#: `_parse_fast`'s to check: a group per parameter costs more than the whole rest of the match).
#: Groups: Expires, KeyID, Issued, the optional parameters, Signature.
_BLOCK: Final = re.compile(
    f"Expires=({TIME.pattern})&KeyID=({KEY_ID.pattern})&Issued=({TIME.pattern})"
    f"((?:&[A-Za-z]+={_VALUE})*?)&Signature=({_SIGNATURE})"
)
_SIGNATURE_GROUP: Final = 5
#: A path that `check_path(decode(...))` returns as it is: plain characters only (nothing to
#: decode), one or more non-empty segments, none starting with '.' (so none '.' or '..'; a
#: `/.well-known` path is left to `check_path`, cheaper than a look-ahead for every path).
_PLAIN_PATH: Final = re.compile(r"(?:/[A-Za-z0-9\-_~:@][A-Za-z0-9\-._~:@]*)+")


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token says. One field per row of `signer.params.PARAMS`, in its order."""

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
    max_streams: int | None = None
    max_uses: int | None = None
    max_served: int | None = None
    rate: int | None = None
    subject_streams: bool = False

    def validate(self, rules: tuple[_Rule, ...] = _RULES) -> Claims:
        """Check every value and the rules between them; raise Rejected(MALFORMED) naming the
        broken one. `rules`: only these rows of `_RULES` (those of the parameters present)."""
        method = self.method or "GET"
        for field, name, absent, check, rule, methods, required, restriction in rules:
            value = getattr(self, field)
            if value is absent:
                if required:
                    raise malformed(f"{name} is missing")
                continue
            check(value, name)
            if rule is not None:
                rule(value)
            if methods is not None and method not in methods:
                raise malformed(restriction)
        if self.issued >= self.expires:
            raise malformed("Issued must be before Expires")
        if self.starts is not None and self.starts >= self.expires:
            raise malformed("Starts must be before Expires")
        if (
            self.min_bytes is not None
            and self.max_bytes is not None
            and self.min_bytes > self.max_bytes
        ):
            raise malformed("MinBytes must not exceed MaxBytes")
        if self.subject_streams and (self.max_streams is None or self.sub is None):
            raise malformed("SubjectStreams needs MaxStreams and Sub")
        return self

    @property
    def has_response_overrides(self) -> bool:
        return self._uses(READ)

    @property
    def has_upload_constraints(self) -> bool:
        return self._uses(UPLOAD)

    @property
    def has_limits(self) -> bool:
        """Whether a gateway must count this link (MaxStreams, MaxUses, MaxServed, Rate)."""
        return (
            self.max_streams is not None
            or self.max_uses is not None
            or self.max_served is not None
            or self.rate is not None
        )

    def _uses(self, methods: frozenset[str]) -> bool:
        return any(
            getattr(self, p.field) is not p.codec.absent
            for p in PARAMS
            if p.methods == methods and not p.limit
        )

    def allows_method(self, method: str) -> bool:
        """GET and HEAD when unbound; GET also allows HEAD (it reveals less)."""
        bound = self.method or "GET"
        return method == bound or (bound == "GET" and method == "HEAD")


def slot_setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of a frozen slotted dataclass's slots, in field order: what builds one on
    the per-request path without its `__init__`, which finds each slot by name through
    `object.__setattr__` (measured: a Link in 0.33 µs against 0.73 µs). No `__post_init__` runs
    and no default is filled in: every field is set, from values already checked."""
    return tuple(getattr(cls, field.name).__set__ for field in dataclasses.fields(cls))


#: The slot setters of `Claims`, and the absent values of the optional fields: `_parse_fast`
#: makes its claims with them (measured: 1.05 µs, against 2.1-2.2 µs for `Claims(...)`).
_CLAIM_SETTERS: Final = slot_setters(Claims)
if len(_CLAIM_SETTERS) != 20:  # pragma: no cover - `_new_claims` sets each field by hand
    raise AssertionError("a Claims field was added: give `_new_claims` its setter call")
_ABSENT_OPTIONAL: Final = tuple(p.codec.absent for p in PARAMS[3:])
#: An optional parameter's place in `Claims`, its codec's parser and its row of `_RULES`.
_OPTIONAL_READERS: Final = {
    p.name: (i, p.codec.parse, rule)
    for i, (p, rule) in enumerate(zip(PARAMS, _RULES, strict=True))
    if i >= 3
}


def _new_claims(values: list[Any]) -> Claims:
    """`Claims(...)` from every field's value in order, one slot setter call each. Unrolled
    like the `__init__` dataclasses writes: a loop over the setters costs 0.5 µs more."""
    claims = object.__new__(Claims)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15, s16, s17, s18, s19 = (
        _CLAIM_SETTERS
    )
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16, v17, v18, v19 = (
        values
    )
    s0(claims, v0)
    s1(claims, v1)
    s2(claims, v2)
    s3(claims, v3)
    s4(claims, v4)
    s5(claims, v5)
    s6(claims, v6)
    s7(claims, v7)
    s8(claims, v8)
    s9(claims, v9)
    s10(claims, v10)
    s11(claims, v11)
    s12(claims, v12)
    s13(claims, v13)
    s14(claims, v14)
    s15(claims, v15)
    s16(claims, v16)
    s17(claims, v17)
    s18(claims, v18)
    s19(claims, v19)
    return claims


def encode_claims(claims: Claims) -> str:
    """The token block without its Signature, exactly as it goes on the wire."""
    claims.validate()
    parts = []
    for param in PARAMS:
        value = getattr(claims, param.field)
        if value is not param.codec.absent:
            parts.append(f"{param.name}={param.codec.encode(value)}")
    return "&".join(parts)


def string_to_sign(raw_path: str, signed_query: str, *, prefixed: bool) -> bytes:
    """The exact bytes a signature covers.

    LABEL, then the raw (canonical) path unless the token carries a Prefix, a newline, then the
    raw query up to but excluding '&Signature='.
    """
    return _signed(raw_path, signed_query, prefixed=prefixed)


_LABEL_TEXT: Final = SIGNING_LABEL.decode("ascii")


def _signed(raw_path: str, signed_query: str, *, prefixed: bool) -> bytes:
    # One f-string encoded once: 0.10 µs, against 0.20 µs for bytes formatting of three parts.
    return f"{_LABEL_TEXT}{'' if prefixed else raw_path}\n{signed_query}".encode("ascii")


@dataclass(frozen=True, slots=True)
class Link:
    """A well-formed signed request target, not yet checked against any key or clock."""

    path: str
    claims: Claims
    signature: bytes
    signed: bytes


_LINK_SETTERS: Final = slot_setters(Link)


def _new_link(path: str, claims: Claims, signature: bytes, signed: bytes) -> Link:
    link = object.__new__(Link)
    set_path, set_claims, set_signature, set_signed = _LINK_SETTERS
    set_path(link, path)
    set_claims(link, claims)
    set_signature(link, signature)
    set_signed(link, signed)
    return link


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
        raise malformed(f"{what} is empty")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise malformed(f"{what} does not decode to ASCII") from None


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
    The steps of docs/token-format.md §6 in order: a broken path form, then no token at all
    (`missing_token`, whatever the path), then every syntax rule (`malformed_token`).
    """
    return _parse(raw_path, raw_query, signature_lengths=SIGNATURE_LENGTHS)


def _parse(raw_path: str, raw_query: str, *, signature_lengths: frozenset[int] | None) -> Link:
    carried = raw_path.startswith(_PATH_FORM_START)  # is_path_form
    if carried:
        raw_path, raw_query = _unwrap_path_form(raw_path, raw_query)
    # What it accepts has a signature of SIGNATURE_LENGTHS, which both callers accept.
    link = _parse_fast(raw_path, raw_query)
    if link is not None:
        return link
    return _parse_slow(raw_path, raw_query, carried=carried, signature_lengths=signature_lengths)


def _parse_slow(
    raw_path: str, raw_query: str, *, carried: bool, signature_lengths: frozenset[int] | None
) -> Link:
    """Every step of §6 after the path form's unwrapping, one at a time: the reference that
    `_parse_fast` must agree with, and the one that names what is wrong."""
    start = _block_start(raw_query)
    if start < 0:
        if carried:
            raise malformed("the path token holds no token block")
        if not any(resembles_token_parameter(part) for part in raw_query.split("&")):
            raise Rejected(Reason.MISSING)
        raise malformed("a token parameter outside the token block, or out of order")
    if not _TARGET.fullmatch(raw_path) or not _is_query(raw_query):
        raise malformed("the request target has characters outside RFC 3986 (or a lone '%')")
    path = check_path(decode(raw_path, "path"))
    if start:
        _check_app_parameters(raw_query[: start - 1])
    values = _token_block(raw_query[start:])
    signature_b64 = values.pop("Signature")
    claims = _claims(values)
    signature = b64decode(signature_b64, "Signature")
    if signature_lengths is not None and len(signature) not in signature_lengths:
        raise malformed("Signature is neither 32 (HMAC-SHA256) nor 64 (Ed25519) bytes")
    signed_query = raw_query[: len(raw_query) - len(signature_b64) - len("&Signature=")]
    signed = string_to_sign(raw_path, signed_query, prefixed=claims.prefix is not None)
    return Link(path=path, claims=claims, signature=signature, signed=signed)


def _parse_fast(raw_path: str, raw_query: str) -> Link | None:
    """`_parse` of a well-formed link (unwrapped from the path form), or None: then `_parse`
    decides. The checks of `_parse`, in its order, in one pattern each where they can be."""
    # `_block_start`, inline; without "&Expires=", 0: where the pattern's "Expires=" fails.
    start = 0 if raw_query.startswith("Expires=") else raw_query.find("&Expires=") + 1
    block = _BLOCK.fullmatch(raw_query, start)
    if block is None:
        return None
    expires, key_id, issued, optional, signature_b64 = block.groups()
    try:
        if _PLAIN_PATH.fullmatch(raw_path):
            path = raw_path
        elif _TARGET.fullmatch(raw_path):
            path = check_path(decode(raw_path, "path"))
        else:
            return None
        if start:
            app = raw_query[: start - 1]
            if not _APP_QUERY.fullmatch(app):
                return None
            _check_app_parameters(app)
        values = [int(expires), key_id, int(issued), *_ABSENT_OPTIONAL]
        rules: tuple[_Rule, ...] = ()
        if optional:
            last = 0
            for part in optional[1:].split("&"):
                name, _, raw = part.partition("=")
                reader = _OPTIONAL_READERS.get(name)
                if reader is None or reader[0] <= last:  # unknown, repeated or out of order
                    return None
                last, parse, rule = reader
                values[last] = parse(raw, name)
                rules += (rule,)
        claims = _new_claims(values).validate(rules)
    except Rejected:
        return None
    signed_query = raw_query[: block.start(_SIGNATURE_GROUP) - len("&Signature=")]
    signed = _signed(raw_path, signed_query, prefixed=claims.prefix is not None)
    return _new_link(path, claims, from_b64url(signature_b64), signed)


def has_token(raw_query: str) -> bool:
    """Whether a raw query carries a token block (well formed or not): then it is the token."""
    return _block_start(raw_query) >= 0


def unverified_prefix_covers(raw_path: str, raw_query: str) -> bool:
    """Whether the token in `raw_query` is well formed and claims a `Prefix` covering `raw_path`.

    UNVERIFIED: anyone can write any Prefix. Only for ordering several presented tokens so that
    the likeliest is verified first; never for a decision. (The signature's length is left to
    verification, which refuses it first.)
    """
    try:
        link = _parse(raw_path, raw_query, signature_lengths=None)
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
        raise malformed("the path form needs an object path after the token segment")
    if raw_query:
        raise malformed("a path-form target must not have a query (it would not be signed)")
    payload = segment[len(PATH_FORM_MARKER) :]
    return "/" + rest, decode_payload(payload, "the path token")


def resembles_token_parameter(part: str) -> bool:
    """Whether a query parameter (`name=value`, or a bare `name`) is named like a token
    parameter: its name, with every `%XX` escape decoded and only A-Z folded to a-z, is one of
    the names in `PARAM_ORDER`. ASCII folding only, so every language agrees (`I%C3%9Fued`, with
    a German sharp s, does not resemble `Issued`)."""
    name = part.partition("=")[0]
    if len(name) > 3 * len("ResponseContentDisposition"):
        return False
    if "%" in name:
        name = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)
    return name.translate(_ASCII_LOWER) in _LOWER_NAMES


def _is_query(raw: str) -> bool:
    """Whether `raw` is all RFC 3986 query characters, each '%' starting an escape."""
    return _QUERY_CHARS.fullmatch(raw) is not None and (
        "%" not in raw or _LONE_PERCENT.search(raw) is None
    )


def check_app_query(app_query: str) -> None:
    """Application parameters: RFC 3986 query characters, none empty, none resembling a token
    parameter."""
    if not _is_query(app_query):
        raise malformed("the query has characters outside RFC 3986 (or a lone '%')")
    _check_app_parameters(app_query)


def _check_app_parameters(app_query: str) -> None:
    for part in app_query.split("&"):
        if not part:
            raise malformed("the query has an empty parameter")
        if resembles_token_parameter(part):
            name = part.partition("=")[0]
            raise malformed(f"token parameter {name!r} outside the token block or out of order")


def _token_block(block: str) -> dict[str, str]:
    values: dict[str, str] = {}
    last = -1
    for part in block.split("&"):
        name, eq, value = part.partition("=")
        rank = _RANK.get(name)
        if not eq or rank is None:
            raise malformed(
                "unknown parameter inside the token block "
                "(application parameters go before Expires)"
            )
        if rank <= last:
            raise malformed(f"{name} is repeated or out of order")
        last = rank
        values[name] = value
    if "Signature" not in values:
        raise malformed("Signature is missing or not last")
    for required in REQUIRED:
        if required not in values:
            raise malformed(f"{required} is missing")
    return values


def _claims(values: dict[str, str]) -> Claims:
    fields: dict[str, Any] = {}
    rules = []
    for name, raw in values.items():
        field, parse, rule = _READERS[name]
        fields[field] = parse(raw, name)
        rules.append(rule)
    return Claims(**fields).validate(tuple(rules))
