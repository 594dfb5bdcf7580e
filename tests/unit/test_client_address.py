"""The client address an IP-bound link is checked against: peer, trusted proxies, forwarded hops.

The trusted proxies throughout are 10.0.0.0/8 and 2001:db8:ffff::/48; 198.51.100.0/24,
203.0.113.0/24 and 2001:db8:cafe::/48 are clients.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.client_address import (
    ForwardedHeader,
    TrustedProxies,
    client_address,
    forwarded_host,
    parse_networks,
)
from signer.addresses import IPAddress

NETWORKS = parse_networks("10.0.0.0/8, 2001:db8:ffff::/48")
XFF = TrustedProxies(NETWORKS, ForwardedHeader.X_FORWARDED_FOR)
FORWARDED = TrustedProxies(NETWORKS, ForwardedHeader.FORWARDED)


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def case(name: str, peer: str | None, headers: list[str], expected: str | None) -> object:
    return pytest.param(peer, headers, expected, id=name)


# --- X-Forwarded-For -------------------------------------------------------------------------

X_FORWARDED_FOR_CASES = [
    case("untrusted peer: spoofed header ignored", "203.0.113.9", ["198.51.100.7"], "203.0.113.9"),
    case("untrusted peer: no header", "203.0.113.9", [], "203.0.113.9"),
    case(
        "trusted peer: the single hop is the client", "10.0.0.1", ["198.51.100.7"], "198.51.100.7"
    ),
    case("trusted peer: no header means the peer", "10.0.0.1", [], "10.0.0.1"),
    case("trusted peer: empty header means the peer", "10.0.0.1", [""], "10.0.0.1"),
    case("trusted peer: blank header means the peer", "10.0.0.1", [" , "], "10.0.0.1"),
    case(
        "chain of trusted proxies is stepped over",
        "10.0.0.1",
        ["198.51.100.7, 10.0.0.3, 10.0.0.2"],
        "198.51.100.7",
    ),
    case(
        "addresses left of the first untrusted hop are the client's own claims",
        "10.0.0.1",
        ["1.1.1.1, 192.0.2.1, 198.51.100.7, 10.0.0.2"],
        "198.51.100.7",
    ),
    case("all hops trusted: the leftmost", "10.0.0.1", ["10.0.0.5, 10.0.0.4"], "10.0.0.5"),
    case(
        "garbage hop: the client is unknown",
        "10.0.0.1",
        ["198.51.100.7, garbage, 10.0.0.2"],
        None,
    ),
    case(
        "garbage rightmost hop: the client is unknown", "10.0.0.1", ["198.51.100.7, unknown"], None
    ),
    case(
        "garbage left of the client does not matter",
        "10.0.0.1",
        ["garbage, 198.51.100.7, 10.0.0.2"],
        "198.51.100.7",
    ),
    case(
        "empty list elements are ignored",
        "10.0.0.1",
        [" , 198.51.100.7,, 10.0.0.2 ,"],
        "198.51.100.7",
    ),
    case("ipv4 with port", "10.0.0.1", ["198.51.100.7:51234"], "198.51.100.7"),
    case("bare ipv6", "10.0.0.1", ["2001:db8:cafe::17"], "2001:db8:cafe::17"),
    case("bracketed ipv6", "10.0.0.1", ["[2001:db8:cafe::17]"], "2001:db8:cafe::17"),
    case("bracketed ipv6 with port", "10.0.0.1", ["[2001:db8:cafe::17]:4711"], "2001:db8:cafe::17"),
    case(
        "ipv6 trusted proxy",
        "2001:db8:ffff::1",
        ["198.51.100.7, [2001:db8:ffff::2]:80"],
        "198.51.100.7",
    ),
    case("ipv4 in brackets is unreadable", "10.0.0.1", ["[198.51.100.7]"], None),
    case("unclosed bracket is unreadable", "10.0.0.1", ["[2001:db8:cafe::17"], None),
    case("empty port is unreadable", "10.0.0.1", ["198.51.100.7:"], None),
    case("named port is unreadable", "10.0.0.1", ["198.51.100.7:http"], None),
    case("six-digit port is unreadable", "10.0.0.1", ["198.51.100.7:123456"], None),
    case("junk after brackets is unreadable", "10.0.0.1", ["[2001:db8::1]x"], None),
    case("obfuscated identifier is unreadable", "10.0.0.1", ["_hidden"], None),
    case("leading zeros are unreadable (ambiguous octal)", "10.0.0.1", ["198.051.100.7"], None),
    case(
        "several header lines form one list, in order",
        "10.0.0.1",
        ["198.51.100.7", "10.0.0.3, 10.0.0.2"],
        "198.51.100.7",
    ),
    case(
        "the last header line is the nearest hop",
        "10.0.0.1",
        ["198.51.100.7", "203.0.113.1"],
        "203.0.113.1",
    ),
    case(
        "garbage on an earlier line makes the client unknown",
        "10.0.0.1",
        ["198.51.100.7, junk", "10.0.0.3"],
        None,
    ),
    case(
        "mapped trusted peer reads the header", "::ffff:10.0.0.1", ["198.51.100.7"], "198.51.100.7"
    ),
    case("mapped untrusted peer is ipv4", "::ffff:203.0.113.9", ["10.0.0.5"], "203.0.113.9"),
    case("mapped hop is ipv4", "10.0.0.1", ["::ffff:198.51.100.7"], "198.51.100.7"),
    case("mapped bracketed hop is ipv4", "10.0.0.1", ["[::ffff:198.51.100.7]:80"], "198.51.100.7"),
    case(
        "mapped trusted hop is stepped over",
        "10.0.0.1",
        ["198.51.100.7, ::ffff:10.0.0.2"],
        "198.51.100.7",
    ),
    case("no peer (unix socket)", None, ["198.51.100.7"], None),
    case("unparseable peer", "not-an-address", ["198.51.100.7"], None),
]


@pytest.mark.parametrize(("peer", "headers", "expected"), X_FORWARDED_FOR_CASES)
def test_x_forwarded_for(peer: str | None, headers: list[str], expected: str | None) -> None:
    assert client_address(peer, headers, XFF) == (ip(expected) if expected else None)


# --- Forwarded (RFC 7239) --------------------------------------------------------------------

FORWARDED_CASES = [
    case(
        "untrusted peer: spoofed header ignored", "203.0.113.9", ["for=198.51.100.7"], "203.0.113.9"
    ),
    case("token ipv4", "10.0.0.1", ["for=198.51.100.7"], "198.51.100.7"),
    case("quoted ipv4 with port", "10.0.0.1", ['for="192.0.2.43:47011"'], "192.0.2.43"),
    case("quoted bracketed ipv6", "10.0.0.1", ['for="[2001:db8:cafe::17]"'], "2001:db8:cafe::17"),
    case(
        "quoted bracketed ipv6 with port",
        "10.0.0.1",
        ['for="[2001:db8:cafe::17]:4711"'],
        "2001:db8:cafe::17",
    ),
    case("parameter name is case-insensitive", "10.0.0.1", ["For=198.51.100.7"], "198.51.100.7"),
    case(
        "other parameters are ignored",
        "10.0.0.1",
        ["for=198.51.100.7;proto=https;by=10.0.0.1;host=example.com"],
        "198.51.100.7",
    ),
    case("for need not come first", "10.0.0.1", ["proto=https; for=198.51.100.7"], "198.51.100.7"),
    case(
        "obfuscated port still gives the address",
        "10.0.0.1",
        ['for="198.51.100.7:_p1"'],
        "198.51.100.7",
    ),
    case("quoted-pair escapes are undone", "10.0.0.1", ['for="198.51.100.\\7"'], "198.51.100.7"),
    case(
        "chain of elements: trusted ones stepped over",
        "10.0.0.1",
        ["for=198.51.100.7, for=10.0.0.3;proto=http, for=10.0.0.2"],
        "198.51.100.7",
    ),
    case("all trusted: the leftmost", "10.0.0.1", ["for=10.0.0.5, for=10.0.0.4"], "10.0.0.5"),
    case("obfuscated identifier is unreadable", "10.0.0.1", ["for=_hidden, for=10.0.0.2"], None),
    case("unknown is unreadable", "10.0.0.1", ["for=unknown"], None),
    case(
        "element without for is unreadable",
        "10.0.0.1",
        ["for=198.51.100.7, proto=https"],
        None,
    ),
    case(
        "element with two for is unreadable",
        "10.0.0.1",
        ["for=198.51.100.7;for=203.0.113.1"],
        None,
    ),
    case("pair without = is unreadable", "10.0.0.1", ["for=198.51.100.7;secure"], None),
    case("empty for is unreadable", "10.0.0.1", ["for="], None),
    case("text after a quoted string is unreadable", "10.0.0.1", ['for="198.51.100.7"x'], None),
    case("unclosed quote is unreadable", "10.0.0.1", ['for="198.51.100.7'], None),
    case(
        "a comma inside quotes does not split elements",
        "10.0.0.1",
        ['for="198.51.100.7, for=10.0.0.9"'],
        None,
    ),
    case(
        "an unclosed quote swallows the rest of its line",
        "10.0.0.1",
        ['for="oops, for=198.51.100.7'],
        None,
    ),
    case(
        "an unclosed quote does not swallow the next line",
        "10.0.0.1",
        ['for="oops', "for=198.51.100.7"],
        "198.51.100.7",
    ),
    case(
        "several header lines form one list, in order",
        "10.0.0.1",
        ["for=198.51.100.7", "for=10.0.0.3"],
        "198.51.100.7",
    ),
    case("empty elements are ignored", "10.0.0.1", [", for=198.51.100.7 ,,"], "198.51.100.7"),
    case("mapped address is ipv4", "10.0.0.1", ['for="[::ffff:198.51.100.7]:80"'], "198.51.100.7"),
    case(
        "unquoted bracketed ipv6 is tolerated",
        "10.0.0.1",
        ["for=[2001:db8:cafe::17]"],
        "2001:db8:cafe::17",
    ),
]


@pytest.mark.parametrize(("peer", "headers", "expected"), FORWARDED_CASES)
def test_forwarded(peer: str | None, headers: list[str], expected: str | None) -> None:
    assert client_address(peer, headers, FORWARDED) == (ip(expected) if expected else None)


# --- peers and trust -------------------------------------------------------------------------


def test_mapped_peer_is_returned_as_ipv4() -> None:
    result = client_address("::ffff:203.0.113.9", [], XFF)
    assert isinstance(result, ipaddress.IPv4Address)
    assert result == ip("203.0.113.9")


def test_peer_zone_is_stripped() -> None:
    result = client_address("fe80::1%eth0", [], XFF)
    assert isinstance(result, ipaddress.IPv6Address)
    assert (result, result.scope_id) == (ip("fe80::1"), None)


def test_zoned_peer_is_trusted_by_its_network() -> None:
    proxies = TrustedProxies(parse_networks("fe80::/10"))
    assert client_address("fe80::1%eth0", ["198.51.100.7"], proxies) == ip("198.51.100.7")


def test_no_trusted_proxies_means_the_peer_is_always_the_client() -> None:
    assert client_address("10.0.0.1", ["198.51.100.7"], TrustedProxies(())) == ip("10.0.0.1")


def test_trusted_proxies_default_to_x_forwarded_for() -> None:
    assert TrustedProxies(NETWORKS).header is ForwardedHeader.X_FORWARDED_FOR


def test_header_names_are_their_lower_case_http_names() -> None:
    assert [str(h) for h in ForwardedHeader] == ["x-forwarded-for", "forwarded"]


def test_a_mapped_network_trusts_the_ipv4_address() -> None:
    assert TrustedProxies(parse_networks("::ffff:10.0.0.0/104")).trusts(ip("10.1.2.3"))


def test_an_ipv4_network_trusts_the_mapped_address() -> None:
    assert XFF.trusts(ip("::ffff:10.1.2.3"))


def test_an_ipv4_network_does_not_trust_other_ipv6_addresses() -> None:
    assert not TrustedProxies(parse_networks("0.0.0.0/0")).trusts(ip("::a01:203"))


# --- parse_networks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", (), id="empty"),
        pytest.param("  \n ", (), id="blank"),
        pytest.param("10.0.0.0/8", ("10.0.0.0/8",), id="one cidr"),
        pytest.param("127.0.0.1", ("127.0.0.1/32",), id="single ipv4 address"),
        pytest.param("::1", ("::1/128",), id="single ipv6 address"),
        pytest.param(
            "10.0.0.0/8, 127.0.0.1, ::1",
            ("10.0.0.0/8", "127.0.0.1/32", "::1/128"),
            id="comma separated",
        ),
        pytest.param(
            "10.0.0.0/8 192.168.0.0/16\n\tfd00::/8",
            ("10.0.0.0/8", "192.168.0.0/16", "fd00::/8"),
            id="whitespace separated",
        ),
        pytest.param(",10.0.0.0/8,,", ("10.0.0.0/8",), id="stray commas"),
    ],
)
def test_parse_networks(text: str, expected: tuple[str, ...]) -> None:
    assert parse_networks(text) == tuple(ipaddress.ip_network(n) for n in expected)


@pytest.mark.parametrize(
    ("text", "bad_entry"),
    [
        pytest.param("banana", "banana", id="not an address"),
        pytest.param("10.0.0.0/8, nope", "nope", id="bad entry after a good one"),
        pytest.param("10.0.0.0/33", "10.0.0.0/33", id="prefix too long"),
        pytest.param("10.0.0.0/", "10.0.0.0/", id="empty prefix"),
        pytest.param("10.0.0.0/8;10.1.0.0/16", "10.0.0.0/8;10.1.0.0/16", id="wrong separator"),
    ],
)
def test_parse_networks_names_the_bad_entry(text: str, bad_entry: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR") as raised:
        parse_networks(text)
    assert repr(bad_entry) in str(raised.value)


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "2001:db8::1/32"])
def test_parse_networks_refuses_host_bits(entry: str) -> None:
    with pytest.raises(ValueError, match="host bits set") as raised:
        parse_networks(f"127.0.0.1, {entry}")
    assert repr(entry) in str(raised.value)
    assert str(ipaddress.ip_network(entry, strict=False)) in str(raised.value)


# --- properties ------------------------------------------------------------------------------

addresses = st.ip_addresses()
ports = st.integers(min_value=0, max_value=65535)
# Never an address: no digits, dots or colons.
garbage = st.one_of(st.sampled_from(["unknown", "_hidden"]), st.text("xyz_-", min_size=1))
# Every character that means something to either header's syntax, to reach deep into the parser.
syntax = st.text('0123456789abcdefFORor[]:;,.="\\_ \t%x')
header_lines = st.lists(st.one_of(st.text(), syntax), max_size=4)
headers = st.sampled_from(ForwardedHeader)


def normal(address: IPAddress) -> IPAddress:
    """What client_address reports for an address: IPv4 for mapped, no IPv6 zone."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@st.composite
def rendered(draw: st.DrawFn, hop: IPAddress | str, header: ForwardedHeader) -> str:
    """One hop as a trusted proxy might write it, in any of the accepted forms."""
    if isinstance(hop, str):
        text = hop
    elif hop.version == 4:
        text = draw(st.sampled_from([f"{hop}", f"{hop}:{draw(ports)}"]))
    else:
        text = draw(st.sampled_from([f"{hop}", f"[{hop}]", f"[{hop}]:{draw(ports)}"]))
    if header is ForwardedHeader.X_FORWARDED_FOR:
        return text
    return draw(st.sampled_from([f'for="{text}"', f'proto=https;for="{text}"']))


@st.composite
def as_lines(draw: st.DrawFn, items: list[str]) -> list[str]:
    """The items as one list, spread over one or more header lines."""
    lines: list[list[str]] = [[]]
    for item in items:
        starts_a_line: bool = draw(st.booleans())
        if starts_a_line and lines[-1]:
            lines.append([])
        lines[-1].append(item)
    return [", ".join(line) for line in lines]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[IPAddress, list[IPAddress | str], TrustedProxies, list[str]]:
    """A peer, hops (addresses or garbage), proxies trusting some of those addresses, headers."""
    peer = draw(addresses)
    hops: list[IPAddress | str] = draw(st.lists(st.one_of(addresses, garbage), max_size=8))
    involved = [peer, *(hop for hop in hops if not isinstance(hop, str))]
    trusted = draw(st.lists(st.sampled_from(involved), unique=True))
    header = draw(headers)
    proxies = TrustedProxies(tuple(ipaddress.ip_network(a) for a in trusted), header)
    lines = draw(as_lines([draw(rendered(hop, header)) for hop in hops]))
    return peer, hops, proxies, lines


@given(scenarios())
def test_the_result_is_the_peer_one_of_the_hops_or_unknown(
    scenario: tuple[IPAddress, list[IPAddress | str], TrustedProxies, list[str]],
) -> None:
    peer, hops, proxies, lines = scenario
    candidates = {normal(peer)} | {normal(hop) for hop in hops if not isinstance(hop, str)}
    assert client_address(str(peer), lines, proxies) in candidates | {None}


@given(peer=addresses, networks=st.lists(st.ip_addresses()), header=headers, lines=header_lines)
def test_an_untrusted_peer_is_the_client_whatever_the_header(
    peer: IPAddress, networks: list[IPAddress], header: ForwardedHeader, lines: list[str]
) -> None:
    proxies = TrustedProxies(tuple(ipaddress.ip_network(n) for n in networks), header)
    assume(not proxies.trusts(peer))
    assert client_address(str(peer), lines, proxies) == normal(peer)


@given(peer=addresses, header=headers, lines=header_lines)
def test_client_address_never_raises_on_header_text(
    peer: IPAddress, header: ForwardedHeader, lines: list[str]
) -> None:
    everyone = TrustedProxies(parse_networks("0.0.0.0/0, ::/0"), header)
    client_address(str(peer), lines, everyone)  # any address or None, never an exception


@given(peer=st.one_of(st.none(), st.text(), addresses.map(str)), lines=header_lines)
def test_client_address_never_raises_on_any_peer(peer: str | None, lines: list[str]) -> None:
    client_address(peer, lines, XFF)


@given(
    client=addresses.filter(lambda a: not XFF.trusts(a)),
    claims=header_lines,
    header=headers,
    data=st.data(),
)
def test_a_client_cannot_write_its_way_past_the_hop_a_proxy_appended(
    client: IPAddress,
    claims: list[str],
    header: ForwardedHeader,
    data: st.DataObject,
) -> None:
    proxies = TrustedProxies(NETWORKS, header)
    appended = data.draw(rendered(client, header))
    assert client_address("10.0.0.1", [*claims, appended], proxies) == normal(client)


@given(client=addresses.filter(lambda a: not XFF.trusts(a)), claim=st.one_of(st.text(), syntax))
def test_x_forwarded_for_appended_to_the_clients_own_line_is_still_believed(
    client: IPAddress, claim: str
) -> None:
    assert client_address("10.0.0.1", [f"{claim}, {client}"], XFF) == normal(client)


@given(
    client=addresses.filter(lambda a: not XFF.trusts(a)),
    claim=st.one_of(st.text(), syntax),
    data=st.data(),
)
def test_forwarded_appended_to_the_clients_own_line_is_the_client_or_unknown(
    client: IPAddress, claim: str, data: st.DataObject
) -> None:
    # An unclosed quote in the client's part swallows the appended element: fail closed, and
    # never to the proxy's own address (which an IP binding might trust).
    appended = data.draw(rendered(client, ForwardedHeader.FORWARDED))
    result = client_address("10.0.0.1", [f"{claim}, {appended}"], FORWARDED)
    assert result in {normal(client), None}


# --- the host a SigV4 link signs ---------------------------------------------------------------

HOST = "gw.internal:8080"


@pytest.mark.parametrize(
    ("peer", "headers", "proxies", "expected"),
    [
        pytest.param(
            "203.0.113.9", {"X-Forwarded-Host": ["evil.example"]}, XFF, HOST, id="untrusted"
        ),
        pytest.param(None, {"X-Forwarded-Host": ["evil.example"]}, XFF, HOST, id="unix-socket"),
        pytest.param("10.0.0.1", {}, XFF, HOST, id="trusted-without-forwarded-host"),
        pytest.param(
            "10.0.0.1",
            {"X-Forwarded-Host": ["media.example.com"]},
            XFF,
            "media.example.com",
            id="trusted",
        ),
        pytest.param(
            "10.0.0.1",
            {"X-Forwarded-Host": ["client.example, media.example.com"]},
            XFF,
            "media.example.com",
            id="the-nearest-proxys-value",
        ),
        pytest.param(
            "10.0.0.1",
            {"X-Forwarded-Host": ["client.example", "media.example.com"]},
            XFF,
            "media.example.com",
            id="the-last-line",
        ),
        pytest.param(
            "10.0.0.1",
            {"Forwarded": ["for=198.51.100.7;host=media.example.com;proto=https"]},
            FORWARDED,
            "media.example.com",
            id="forwarded",
        ),
        pytest.param(
            "10.0.0.1",
            {"Forwarded": ['host=client.example, for=192.0.2.1;host="m.example:8443"']},
            FORWARDED,
            "m.example:8443",
            id="forwarded-last-element-quoted",
        ),
        pytest.param(
            "10.0.0.1",
            {"Forwarded": ["for=198.51.100.7"]},
            FORWARDED,
            HOST,
            id="forwarded-without-host",
        ),
        pytest.param(
            "10.0.0.1",
            {"Forwarded": ['for=198.51.100.7;host="unclosed']},
            FORWARDED,
            None,
            id="forwarded-unreadable",
        ),
        pytest.param(
            "10.0.0.1",
            {"X-Forwarded-Host": ["media.example.com"]},
            FORWARDED,
            HOST,
            id="the-header-not-configured-is-not-read",
        ),
    ],
)
def test_the_signed_host_is_the_host_header_or_what_a_trusted_proxy_forwarded(
    peer: str | None, headers: dict[str, list[str]], proxies: TrustedProxies, expected: str | None
) -> None:
    assert forwarded_host(peer, HOST, lambda name: headers.get(name, []), proxies) == expected
