"""Who is the client? The address an IP-bound link is checked against.

The socket peer is the only address nobody can lie about. When the peer is a proxy we trust, the
forwarding header it sets (X-Forwarded-For, or RFC 7239 Forwarded) says who it was talking to,
and so on leftwards through every proxy we trust. Whatever sits left of the first hop we do not
trust was written by the client itself, so it is never believed.

Everything here fails closed: a hop we cannot read stops the walk at the last address we can
vouch for (the proxy that handed us the garbage), so an attacker never chooses the result.
Standard library only; nothing here raises on header text.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from signer.addresses import IPAddress, IPNetwork, unmapped, within
from signer.syntax import TCHAR


class ForwardedHeader(enum.StrEnum):
    """The header trusted proxies set; the value is its lower-case name."""

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"  # RFC 7239


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The proxies whose forwarding header we believe, and which header that is."""

    networks: tuple[IPNetwork, ...]
    header: ForwardedHeader = ForwardedHeader.X_FORWARDED_FOR

    def trusts(self, address: IPAddress) -> bool:
        """Whether `address` is one of our proxies. IPv4 and IPv4-mapped IPv6 are the same host."""
        return bool(self.networks) and within(address, self.networks)  # none: every request


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma- or whitespace-separated CIDRs or single addresses, e.g. "10.0.0.0/8, 127.0.0.1, ::1".

    An empty text is no networks. A bad entry raises ValueError naming it; so does a CIDR with
    host bits set ("10.0.0.1/8"), which is more likely a typo than a wish to trust 10.0.0.0/8.
    """
    networks: list[IPNetwork] = []
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError:
            try:
                loose = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
            raise ValueError(
                f"{entry!r} has host bits set: the network is {loose}, or give a single address"
            ) from None
    return tuple(networks)


def client_address(
    peer: str | None, header_values: Sequence[str], proxies: TrustedProxies
) -> IPAddress | None:
    """The address of the client as far as we can trust it; None when there is no IP peer.

    `peer` is the socket peer's address (None for a unix socket). `header_values` is every value
    of `proxies.header`, in the order received: several header lines form one list, in order.

    An untrusted peer is the client, whatever its headers say. Behind a trusted peer, the hops
    are walked right to left, stepping over each trusted one: the first untrusted hop is the
    client; if all are trusted, the leftmost is; with no hops, the peer is. A hop that cannot be
    read makes the client unknown (None), which no IP binding matches: returning the proxy
    instead would let a client that breaks the header borrow the proxy's address.
    """
    if peer is None:
        return None
    current = _parse_ip(peer)
    if current is None or not proxies.trusts(current):
        return current
    if proxies.header is ForwardedHeader.FORWARDED:
        hops = [hop for value in header_values for hop in _forwarded_hops(value)]
    else:
        hops = [hop for value in header_values for hop in _x_forwarded_for_hops(value)]
    for hop in reversed(hops):
        if hop is None:  # unreadable: fail closed
            return None
        if not proxies.trusts(hop):
            return hop
        current = hop
    return current


def forwarded_host(
    peer: str | None,
    host: str | None,
    header: Callable[[str], Sequence[str]],
    proxies: TrustedProxies,
) -> str | None:
    """The host the client asked for, which a SigV4 link signs: the `Host` header, or from a
    trusted peer the host the nearest proxy forwarded, when it sent one (`X-Forwarded-Host`
    with `x-forwarded-for`, the `host=` of `Forwarded`'s last element with `forwarded`).

    `header` gives every value of a request header by name. The last value is taken, the one
    the proxy that handed us the request wrote: a proxy that appends rather than sets passes on
    whatever the client sent first. An unreadable value gives None (no host), never a guess.
    """
    address = _parse_ip(peer) if peer is not None else None
    if address is None or not proxies.trusts(address):
        return host
    if proxies.header is ForwardedHeader.FORWARDED:
        elements = [e for v in header("Forwarded") for e in _split_unquoted(v, ",")[0]]
        last = next((e for e in reversed(elements) if e.strip()), None)
        return host if last is None else _forwarded_param(last, "host", host)
    items = [item.strip() for v in header("X-Forwarded-Host") for item in v.split(",")]
    forwarded = next((item for item in reversed(items) if item), None)
    return host if forwarded is None else forwarded


# --- parsing ---------------------------------------------------------------------------------

# A hop is an address, or None when it is present but cannot be read. Empty list elements
# ("a, , b") are not hops at all: HTTP list syntax allows them, and recipients ignore them
# (RFC 9110, section 5.6.1).

_PORT = re.compile(r"[0-9]{1,5}")
# RFC 7239 section 6.3: an obfuscated port, e.g. for="192.0.2.43:_p1". The address still counts.
_OBFUSCATED_PORT = re.compile(r"_[A-Za-z0-9._-]+")
_TOKEN = re.compile(TCHAR + "+")


@functools.lru_cache(maxsize=4096)  # once per request for the socket peer: keep it cheap
def _parse_ip(text: str) -> IPAddress | None:
    """A bare address; an IPv6 zone ('%eth0') is dropped, IPv4-mapped IPv6 becomes IPv4."""
    try:
        return unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def _parse_node(text: str, *, obfuscated_port: bool) -> IPAddress | None:
    """'v4', 'v6', '[v6]', '[v6]:port' or 'v4:port'; None if it is anything else."""

    def port_ok(port: str) -> bool:
        return bool(_PORT.fullmatch(port) or (obfuscated_port and _OBFUSCATED_PORT.fullmatch(port)))

    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and port_ok(rest[1:]))):
            return None
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            return None
        return unmapped(address)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port_ok(port):
            return None
        try:
            return ipaddress.IPv4Address(host)
        except ValueError:
            return None
    return _parse_ip(text)


def _x_forwarded_for_hops(value: str) -> list[IPAddress | None]:
    hops: list[IPAddress | None] = []
    for item in value.split(","):
        item = item.strip()
        if item:
            hops.append(_parse_node(item, obfuscated_port=False))
    return hops


def _split_unquoted(text: str, separator: str) -> tuple[list[str], bool]:
    """`text` split at `separator` outside quoted strings; and whether every quote was closed."""
    if '"' not in text:
        return text.split(separator), True
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == separator:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts, not quoted


def _unquote(value: str) -> str | None:
    """An RFC 7239 value: a token-ish run, or one whole quoted-string; None if neither."""
    if not value.startswith('"'):
        return None if not value or any(c in value for c in '" \t') else value
    chars: list[str] = []
    index = 1
    while index < len(value):
        char = value[index]
        if char == "\\":
            if index + 1 == len(value):
                return None
            chars.append(value[index + 1])
            index += 2
        elif char == '"':
            return "".join(chars) if index == len(value) - 1 else None
        else:
            chars.append(char)
            index += 1
    return None


def _forwarded_element(element: str) -> IPAddress | None:
    """The `for=` address of one element; None if it has none, or two, or is malformed."""
    pairs, _ = _split_unquoted(element, ";")
    node: str | None = None
    for pair in pairs:
        if not pair.strip():
            continue
        name, equals, raw = pair.partition("=")
        name = name.strip()
        if not equals or not _TOKEN.fullmatch(name):
            return None
        value = _unquote(raw.strip())
        if value is None:
            return None
        if name.lower() == "for":
            if node is not None:
                return None
            node = value
    if node is None:
        return None
    return _parse_node(node, obfuscated_port=True)


def _forwarded_param(element: str, wanted: str, default: str | None) -> str | None:
    """One parameter of a Forwarded element; `default` when absent, None when unreadable."""
    pairs, closed = _split_unquoted(element, ";")
    if not closed:
        return None
    for pair in pairs:
        name, equals, raw = pair.strip().partition("=")
        if equals and name.strip().lower() == wanted:
            return _unquote(raw.strip())
    return default


def _forwarded_hops(value: str) -> list[IPAddress | None]:
    """One Forwarded line's hops. An unclosed quote makes its last element unreadable, and
    cannot swallow the next line: each line is read on its own."""
    elements, closed = _split_unquoted(value, ",")
    hops: list[IPAddress | None] = []
    for position, element in enumerate(elements):
        if not closed and position == len(elements) - 1:
            hops.append(None)
        elif element.strip():
            hops.append(_forwarded_element(element))
    return hops
