"""The token parameters, each described once: the table everything else derives from.

    PARAMS row -> PARAM_ORDER, parsing a token block into `Claims`, `Claims.validate`,
                  `encode_claims` (signer.format); the signing keywords of `sign_path`
                  (signer.sign); the `signer sign` flags and `signer verify` lines (signer.cli);
                  the decoded and wire forms of every test vector (scripts/generate_vectors.py)

A row names the parameter on the wire, its `Claims` field (and signing keyword), its codec (how
its text is read and written), the rule its decoded value obeys, the methods it may be used
with, and whether it is a usage limit (counted by the gateways, not by a verifier). Relations
between parameters (Issued < Expires, MinBytes <= MaxBytes, SubjectStreams needs MaxStreams and
Sub) are in `Claims.validate`. `Claims`
and `signer.SignOptions` still declare each field with its type, for mypy;
tests/unit/test_format.py fails when either disagrees with this table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from signer.addresses import IPNetwork
from signer.errors import SigningError
from signer.syntax import (
    COUNT,
    IPV4_MAPPED,
    MAX_BYTES,
    MAX_TIME,
    METHODS,
    TIME,
    canonical,
    canonical_ip,
    check_disposition,
    check_ip,
    check_key_id,
    check_method,
    check_prefix,
    check_response_type,
    check_sub,
    check_upload_type,
    decode,
    format_ip,
    malformed,
)

ANY: Final = frozenset(METHODS)
READ: Final = frozenset(("GET", "HEAD"))
UPLOAD: Final = frozenset(("PUT",))


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Codec:
    """How one kind of value travels: wire text <-> value, and the signer's input -> value."""

    kind: str
    #: wire text -> value; raises Rejected(MALFORMED). Called with the text and the param name.
    parse: Callable[[str, str], Any]
    #: value -> wire text (the value is valid)
    encode: Callable[[Any], str]
    #: the value's own rule (type, range); raises Rejected(MALFORMED)
    check: Callable[[Any, str], None]
    #: the `Claims` value of an absent parameter
    absent: Any = None
    #: a signing keyword's value -> the `Claims` value (None: absent)
    from_option: Callable[[Any], Any] = _identity
    #: decoded text (command line, test vectors) -> a signing keyword's value
    from_text: Callable[[str], Any] = _identity


def _parse_int(pattern: Any) -> Callable[[str, str], int]:
    def parse(text: str, name: str) -> int:
        if not pattern.fullmatch(text):
            raise malformed(f"{name} must be a decimal integer without sign or leading zeros")
        return int(text)

    return parse


def _check_range(top: int) -> Callable[[Any, str], None]:
    def check(value: Any, name: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise malformed(f"{name} is out of range")

    return check


def _check_text(value: Any, name: str) -> None:
    if not isinstance(value, str):
        raise malformed(f"{name} must be text")


def _parse_flag(text: str, name: str) -> bool:
    if text != "1":
        raise malformed(f"{name} must be 1 when present")
    return True


def _check_flag(value: Any, name: str) -> None:
    if value is not True:
        raise malformed(f"{name} is a flag: present (1) or absent")


def _parse_ip(text: str, name: str) -> IPNetwork:
    return canonical_ip(text)


def _check_network(value: Any, name: str) -> None:
    if not isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        raise malformed(f"{name} must be an address or a network")
    check_ip(value)


def ip_binding(text: str) -> IPNetwork:
    """The binding for an address or network in any spelling `ipaddress` reads.

    An IPv4-mapped one (`::ffff:127.0.0.1`, `::ffff:0:0/104`), which is how a backend on a
    dual-stack socket sees IPv4 clients, is written in its IPv4 form: verifiers compare mapped
    client addresses as IPv4 and refuse mapped bindings, so the IPv6 form could never be used.
    A zone id (`fe80::1%eth0`) names an interface of one host and is refused.
    """
    if "%" in text:
        raise SigningError(f"ip {text!r}: a zone id cannot be bound")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise SigningError(f"ip {text!r}: {exc}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


TIME_CODEC: Final = Codec("time", _parse_int(TIME), str, _check_range(MAX_TIME), from_text=int)
COUNT_CODEC: Final = Codec("count", _parse_int(COUNT), str, _check_range(MAX_BYTES), from_text=int)
#: Taken verbatim: its own rule (`check_key_id`) leaves nothing to escape.
KEY_CODEC: Final = Codec("key id", lambda text, name: text, _identity, _check_text)
IP_CODEC: Final = Codec(
    "ip",
    _parse_ip,
    format_ip,
    _check_network,
    from_option=lambda value: None if value is None else ip_binding(value),
)
#: Verbatim upper-case names; the signer upper-cases what it is given.
METHOD_CODEC: Final = Codec(
    "method",
    lambda text, name: text,
    _identity,
    _check_text,
    from_option=lambda value: value.upper() if value else None,
)
#: Unicode text, percent-encoded canonically (§3).
TEXT_CODEC: Final = Codec("text", decode, canonical, _check_text)
#: Present (`=1`) or absent; never `=0`.
FLAG_CODEC: Final = Codec(
    "flag",
    _parse_flag,
    lambda value: "1",
    _check_flag,
    absent=False,
    from_option=bool,
    from_text=lambda text: text == "1",
)


@dataclass(frozen=True)
class Param:
    """One token parameter."""

    name: str  # on the wire, case-sensitive; its row is its place in the order
    field: str  # the `Claims` attribute
    codec: Codec
    summary: str  # one line, for `signer sign --help`
    rule: Callable[[Any], object] | None = None  # the decoded value's own rule, if any
    required: bool = False
    methods: frozenset[str] = ANY  # the methods (Method, absent = GET) it may be used with
    option: str | None = ""  # the signing keyword ("" = `field`; None = set by the signer)
    cli_type: Callable[[str], Any] | None = None  # `signer sign` reads the flag's text so
    limit: bool = False  # a usage limit: counted by the gateways together, not by a verifier

    @property
    def keyword(self) -> str | None:
        """The `sign_path` keyword that sets it, or None when the signer sets it itself."""
        return self.field if self.option == "" else self.option

    @property
    def restriction(self) -> str:
        """Why it is refused with a method outside `methods`."""
        if self.methods == UPLOAD:
            return f"{self.name}: upload constraints need Method=PUT"
        if self.limit:
            return f"{self.name}: usage limits need a reading Method (GET or HEAD)"
        return f"{self.name}: response overrides need a reading Method (GET or HEAD)"


def _positive(value: int) -> None:
    """A limit of 0 would make a link nobody can use: a signing mistake, not a policy."""
    if value < 1:
        raise malformed("a usage limit must be at least 1")


def _cli_prefix(text: str) -> str:
    """`--prefix` is spelt like the URL's path, which is percent-decoded once."""
    return unquote(text, errors="strict")


# One row per parameter, in the only order they may appear on the wire. Columns: name on the
# wire, Claims field (= signing keyword unless `option` says otherwise), codec, the value's own
# rule, the methods it may be used with, and the one line `signer sign --help` shows.
# fmt: off
PARAMS: Final[tuple[Param, ...]] = (
    Param("Expires", "expires", TIME_CODEC, "refused from this second on",
          required=True, option=None),
    Param("KeyID", "key_id", KEY_CODEC, "the signing key", check_key_id,
          required=True, option=None),
    Param("Issued", "issued", TIME_CODEC, "when it was signed",
          required=True, option=None),
    Param("Starts", "starts", TIME_CODEC, "not valid before",
          option="starts_at"),
    Param("IP", "ip", IP_CODEC, "bind to a client address or CIDR (IPv4 or IPv6)"),
    Param("Prefix", "prefix", TEXT_CODEC, "authorize every path under this prefix (ends with /)",
          check_prefix, cli_type=_cli_prefix),
    Param("Method", "method", METHOD_CODEC, "default: GET and HEAD", check_method),
    Param("Sub", "sub", TEXT_CODEC, "opaque subject id (audit; revoke all of a user's links)",
          check_sub),
    Param("ResponseContentType", "response_content_type", TEXT_CODEC,
          "answer with this Content-Type", check_response_type, methods=READ),
    Param("ResponseContentDisposition", "response_content_disposition", TEXT_CODEC,
          "answer with this Content-Disposition (e.g. 'attachment; filename=\"a.pdf\"')",
          check_disposition, methods=READ),
    Param("ContentType", "content_type", TEXT_CODEC, "exact type, or a type/ prefix like image/",
          check_upload_type, methods=UPLOAD),
    Param("MinBytes", "min_bytes", COUNT_CODEC, "smallest accepted body", methods=UPLOAD),
    Param("MaxBytes", "max_bytes", COUNT_CODEC, "largest accepted body", methods=UPLOAD),
    Param("NoOverwrite", "no_overwrite", FLAG_CODEC, "fail if the key exists", methods=UPLOAD),
    Param("OneTime", "one_time", FLAG_CODEC, "usable for one upload", methods=UPLOAD),
    Param("MaxStreams", "max_streams", COUNT_CODEC,
          "at most N clients served at once, fleet-wide (a lease per client address)",
          _positive, methods=READ, limit=True),
    Param("MaxUses", "max_uses", COUNT_CODEC,
          "at most N downloads (requests that start at byte 0), fleet-wide",
          _positive, methods=READ, limit=True),
    Param("MaxServed", "max_served", COUNT_CODEC,
          "at most N bytes served over the link's life, fleet-wide",
          _positive, methods=READ, limit=True),
    Param("Rate", "rate", COUNT_CODEC, "pace the link to N bytes per second, fleet-wide",
          _positive, methods=READ, limit=True),
    Param("SubjectStreams", "subject_streams", FLAG_CODEC,
          "MaxStreams counts the streams of every link of this Sub together (needs both)",
          methods=READ, limit=True),
)
# fmt: on

#: Every token parameter name, in the only order they may appear; `Signature` is always last.
PARAM_ORDER: Final = (*(p.name for p in PARAMS), "Signature")
BY_NAME: Final = {p.name: p for p in PARAMS}
REQUIRED: Final = tuple(p.name for p in PARAMS if p.required)
#: The usage limits (§12 of docs/token-format.md), by `Claims` field.
LIMITS: Final = tuple(p.field for p in PARAMS if p.limit)


def sign_options(decoded: Mapping[str, str]) -> dict[str, Any]:
    """The signing keywords for parameters given as decoded text by wire name, as the test
    vectors give them (`{"Expires": "1767229200", "Sub": "user 42"}`): `Expires` becomes
    `expires_at` and `Issued` the signing time `now`; `KeyID` is the caller's to choose."""
    options: dict[str, Any] = {}
    for name, text in decoded.items():
        param = BY_NAME[name]
        if param.keyword is not None:
            options[param.keyword] = param.codec.from_text(text)
    if "Expires" in decoded:
        options["expires_at"] = int(decoded["Expires"])
    if "Issued" in decoded:
        options["now"] = int(decoded["Issued"])
    return options
