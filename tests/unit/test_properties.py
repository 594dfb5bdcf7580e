"""Property-based specification of sign -> verify."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TypedDict, Unpack

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signer import (
    Algorithm,
    Keyring,
    Reason,
    Rejected,
    SigningError,
    Status,
    new_key,
    sign_path,
    sign_url,
    verify,
)
from signer.addresses import IPAddress
from signer.format import canonical, path_form
from tests.conftest import NOW

KEYRINGS = {alg: Keyring([new_key("k1", alg, Status.ACTIVE, now=NOW)]) for alg in Algorithm}
OTHERS = {alg: Keyring([new_key("k1", alg, Status.ACTIVE, now=NOW)]) for alg in Algorithm}
CLIENT = ipaddress.ip_address("192.0.2.1")

segment_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00")
segments = st.text(segment_chars, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
paths = st.lists(segments, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
subjects = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=20)
tricky_paths = st.one_of(
    paths,
    st.sampled_from(["/a%2Fb", "/a b/c d", "/ü/€/𝄞", "/?#[]@!$&'()*+,;=", "/%", "/%25", "/~-._"]),
)
algorithms = st.sampled_from(list(Algorithm))


class Context(TypedDict, total=False):
    """What a request brings to verification besides its target (`check`'s keywords)."""

    method: str
    client_ip: IPAddress | None
    now: float


def check(
    keyring: Keyring,
    target: str,
    *,
    method: str = "GET",
    client_ip: IPAddress | None = CLIENT,
    now: float = NOW + 1,
) -> str:
    path, _, query = target.partition("?")
    return verify(
        keyring, method=method, raw_path=path, raw_query=query, client_ip=client_ip, now=now, skew=0
    ).path


def rejection(keyring: Keyring, target: str, **context: Unpack[Context]) -> Reason:
    with pytest.raises(Rejected) as caught:
        check(keyring, target, **context)
    return caught.value.reason


@given(alg=algorithms, path=tricky_paths)
def test_any_path_round_trips(alg: Algorithm, path: str) -> None:
    target = sign_path(path, KEYRINGS[alg], expires_in=60, now=NOW)
    assert check(KEYRINGS[alg], target) == path


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(alg=algorithms, path=tricky_paths, sub=st.none() | subjects, data=st.data())
def test_any_single_byte_change_is_rejected(
    alg: Algorithm, path: str, sub: str | None, data: st.DataObject
) -> None:
    target = sign_path(path, KEYRINGS[alg], query="app=1", expires_in=60, sub=sub, now=NOW)
    position = data.draw(st.integers(0, len(target) - 1), label="position")
    replacement = data.draw(st.integers(0, 255), label="byte")
    assume(chr(replacement) != target[position])
    mutated = target[:position] + chr(replacement) + target[position + 1 :]
    with pytest.raises(Rejected):
        check(KEYRINGS[alg], mutated)


@given(alg=algorithms, lifetime=st.integers(1, 7 * 86400), late=st.integers(0, 10**6))
def test_expired_links_say_expired(alg: Algorithm, lifetime: int, late: int) -> None:
    target = sign_path("/a", KEYRINGS[alg], expires_in=lifetime, now=NOW)
    assert check(KEYRINGS[alg], target, now=NOW + lifetime - 1) == "/a"
    assert rejection(KEYRINGS[alg], target, now=NOW + lifetime + late) is Reason.EXPIRED


@given(alg=algorithms, wait=st.integers(1, 86400), early=st.integers(1, 86400))
def test_links_before_starts_say_not_yet_valid(alg: Algorithm, wait: int, early: int) -> None:
    target = sign_path("/a", KEYRINGS[alg], expires_in=wait + 10, starts_at=NOW + wait, now=NOW)
    assert rejection(KEYRINGS[alg], target, now=NOW + wait - early) is Reason.NOT_YET_VALID
    assert check(KEYRINGS[alg], target, now=NOW + wait) == "/a"


@given(alg=algorithms, ahead=st.integers(1, 10**6))
def test_links_issued_in_the_future_say_issued_in_future(alg: Algorithm, ahead: int) -> None:
    """A future Issued would stretch a link past the lifetime cap and dodge `revoke --before`."""
    target = sign_path("/a", KEYRINGS[alg], expires_in=3600, now=NOW + ahead)
    assert rejection(KEYRINGS[alg], target, now=NOW) is Reason.ISSUED_IN_FUTURE
    assert check(KEYRINGS[alg], target, now=NOW + ahead) == "/a"


DAY = 86400


@pytest.mark.parametrize(
    ("issued", "expected"),
    [
        (NOW + 30 * DAY - 3600, Reason.ISSUED_IN_FUTURE),  # Expires 30 days out, Issued 1 h before
        (NOW + 31, Reason.ISSUED_IN_FUTURE),
        (NOW + 30, None),  # within the clock skew
    ],
)
def test_issued_is_judged_against_the_clock_with_the_skew(
    issued: int, expected: Reason | None
) -> None:
    keyring = KEYRINGS[Algorithm.ED25519]
    target = sign_path("/a", keyring, expires_at=NOW + 30 * DAY, now=issued, max_lifetime=30 * DAY)
    path, _, query = target.partition("?")

    def judged() -> str:
        return verify(
            keyring,
            method="GET",
            raw_path=path,
            raw_query=query,
            client_ip=CLIENT,
            now=NOW,
            skew=30,
        ).path

    if expected is None:
        assert judged() == "/a"
    else:
        with pytest.raises(Rejected) as caught:
            judged()
        assert caught.value.reason is expected


@given(
    alg=algorithms,
    network=st.ip_addresses().map(ipaddress.ip_network).filter(lambda n: not _mapped(n))
    | st.sampled_from([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]),
    client=st.ip_addresses(),
)
def test_ip_binding_accepts_exactly_the_bound_addresses(
    alg: Algorithm,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    client: IPAddress,
) -> None:
    target = sign_path("/a", KEYRINGS[alg], expires_in=60, ip=str(network), now=NOW)
    address = client.ipv4_mapped or client if client.version == 6 else client
    inside = address.version == network.version and address in network
    if inside:
        assert check(KEYRINGS[alg], target, client_ip=client) == "/a"
    else:
        assert rejection(KEYRINGS[alg], target, client_ip=client) is Reason.IP_MISMATCH


def _spellings(address: IPAddress, prefixlen: int, mapped: bool, upper: bool) -> str:
    """One of the many ways `ipaddress` (and so a backend) may write an address or network."""
    network = ipaddress.ip_network((address, prefixlen), strict=False)
    text = str(network.network_address)
    if mapped and network.version == 4:
        text, prefixlen = f"::ffff:{text}", prefixlen + 96
    if upper:
        text = text.upper()
    return f"{text}/{prefixlen}"


ip_inputs = st.one_of(
    st.builds(_spellings, st.ip_addresses(v=4), st.integers(0, 32), st.booleans(), st.booleans()),
    st.builds(_spellings, st.ip_addresses(v=6), st.integers(0, 128), st.just(False), st.booleans()),
    st.ip_addresses().map(str),
    st.text("0123456789abcdefABCDEF:./%f", max_size=24),
)


@settings(max_examples=300)
@given(alg=algorithms, value=ip_inputs)
def test_every_ip_binding_the_signer_writes_is_one_the_verifier_accepts(
    alg: Algorithm, value: str
) -> None:
    """Whatever spelling a backend hands over, the link it gets can be used: never a binding
    that every verifier refuses, and the addresses it names (in any form) match it."""
    try:
        target = sign_path("/a", KEYRINGS[alg], expires_in=60, ip=value, now=NOW)
    except SigningError:
        return
    network = ipaddress.ip_network(value, strict=True)
    for client in (network.network_address, network.broadcast_address):
        assert check(KEYRINGS[alg], target, client_ip=client) == "/a"


def test_sign_url_writes_an_ipv4_mapped_address_in_its_ipv4_form() -> None:
    keyring = KEYRINGS[Algorithm.HMAC_SHA256]
    url = sign_url("https://cdn.example/a", keyring, expires_in=60, ip="::ffff:127.0.0.1", now=NOW)
    assert "&IP=127.0.0.1&" in url
    target = url.removeprefix("https://cdn.example")
    assert check(keyring, target, client_ip=ipaddress.ip_address("127.0.0.1")) == "/a"


def _mapped(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return isinstance(network, ipaddress.IPv6Network) and network.subnet_of(
        ipaddress.IPv6Network("::ffff:0:0/96")
    )


def test_ipv4_mapped_client_addresses_match_ipv4_bindings() -> None:
    target = sign_path(
        "/a", KEYRINGS[Algorithm.ED25519], expires_in=60, ip="203.0.113.0/24", now=NOW
    )
    mapped = ipaddress.ip_address("::ffff:203.0.113.5")
    assert check(KEYRINGS[Algorithm.ED25519], target, client_ip=mapped) == "/a"


def test_an_ip_bound_link_without_a_known_client_is_refused() -> None:
    target = sign_path("/a", KEYRINGS[Algorithm.ED25519], expires_in=60, ip="203.0.113.5", now=NOW)
    assert rejection(KEYRINGS[Algorithm.ED25519], target, client_ip=None) is Reason.IP_MISMATCH


@given(alg=algorithms, path=paths)
def test_another_keyrings_key_of_the_same_id_is_a_bad_signature(alg: Algorithm, path: str) -> None:
    target = sign_path(path, KEYRINGS[alg], expires_in=60, now=NOW)
    assert rejection(OTHERS[alg], target) is Reason.BAD_SIGNATURE


@given(alg=algorithms, path=paths)
def test_a_signature_of_another_algorithms_length_is_malformed(alg: Algorithm, path: str) -> None:
    """The key fixes the algorithm; a signature that could not be of it is not even tried."""
    target = sign_path(path, KEYRINGS[alg], expires_in=60, now=NOW)
    other = next(a for a in Algorithm if a is not alg)
    assert rejection(OTHERS[other], target) is Reason.MALFORMED


@given(alg=algorithms, path=paths)
def test_an_unknown_key_id_is_unknown_key(alg: Algorithm, path: str) -> None:
    target = sign_path(path, KEYRINGS[alg], expires_in=60, now=NOW)
    stranger = Keyring([new_key("k2", alg, Status.ACTIVE, now=NOW)])
    assert rejection(stranger, target) is Reason.UNKNOWN_KEY


@given(prefix=paths, inside=paths, outside=paths)
def test_prefix_tokens_cover_exactly_their_subtree(prefix: str, inside: str, outside: str) -> None:
    keyring = KEYRINGS[Algorithm.ED25519]
    first = prefix + inside
    target = sign_path(first, keyring, expires_in=60, prefix=prefix + "/", now=NOW)
    token = target.partition("?")[2]
    assert check(keyring, canonical(prefix + inside) + "?" + token) == first
    assume(not outside.startswith(prefix + "/"))
    assert rejection(keyring, canonical(outside) + "?" + token) is Reason.OUTSIDE_PREFIX


@given(prefix=paths, inside=paths, outside=paths)
def test_the_path_form_carries_a_prefix_token_to_every_path_under_it(
    prefix: str, inside: str, outside: str
) -> None:
    """A relative URI resolved against a path-form URL keeps the token segment, so any path
    under the prefix verifies with the same token, and nothing outside it does."""
    keyring = KEYRINGS[Algorithm.HMAC_SHA256]
    target = path_form(
        sign_path(prefix + inside, keyring, expires_in=60, prefix=prefix + "/", now=NOW)
    )
    token_segment = target[: target.index("/", 1)]
    assert check(keyring, token_segment + canonical(prefix + outside)) == prefix + outside
    assume(not outside.startswith(prefix + "/"))
    assert rejection(keyring, token_segment + canonical(outside)) is Reason.OUTSIDE_PREFIX


@given(alg=algorithms, path=tricky_paths, data=st.data())
def test_any_single_byte_change_to_a_path_form_token_is_rejected(
    alg: Algorithm, path: str, data: st.DataObject
) -> None:
    keyring = KEYRINGS[alg]
    target = path_form(sign_path(path, keyring, expires_in=60, now=NOW))
    end = target.index("/", 1)
    index = data.draw(st.integers(len("/token="), end - 1))
    replacement = data.draw(st.sampled_from("AQgw-_=%/."))
    assume(target[index] != replacement)
    tampered = target[:index] + replacement + target[index + 1 :]
    assert rejection(keyring, tampered) in (
        Reason.MALFORMED,
        Reason.BAD_SIGNATURE,
        Reason.UNKNOWN_KEY,  # the change landed in KeyID
    )


@pytest.mark.parametrize("sign", [sign_path, sign_url])
def test_a_misspelt_signing_option_is_an_error_not_a_link_without_it(
    sign: Callable[..., str],
) -> None:
    with pytest.raises(TypeError, match="unknown signing option"):
        sign("/a", KEYRINGS[Algorithm.HMAC_SHA256], expires_in=60, sub_id="user-42")


@given(
    alg=algorithms,
    window=st.integers(1, 3600),
    start=st.integers(0, 10**6),
    lifetime=st.integers(1, 86400),
    data=st.data(),
)
def test_within_one_window_every_signing_gives_the_same_url(
    alg: Algorithm, window: int, start: int, lifetime: int, data: st.DataObject
) -> None:
    """The same user, object and bindings: one URL per window, which a cache can keep."""
    begin = (NOW // window + start) * window
    first, second = (
        data.draw(st.integers(0, window - 1)) + data.draw(st.sampled_from([0, 0.25, 0.5]))
        for _ in range(2)
    )

    def signed_at(moment: float) -> str:
        return sign_path(
            "/a", KEYRINGS[alg], expires_in=lifetime, sub="u-1", window=window, now=moment
        )

    assert signed_at(begin + first) == signed_at(begin + second)
    assert signed_at(begin + window) != signed_at(begin)


@given(window=st.integers(1, 3600), now=st.floats(NOW, NOW + 10**6), lifetime=st.integers(1, 86400))
def test_a_windowed_link_lives_at_least_as_asked_and_at_most_one_window_longer(
    window: int, now: float, lifetime: int
) -> None:
    keyring = KEYRINGS[Algorithm.HMAC_SHA256]
    target = sign_path("/a", keyring, expires_in=lifetime, window=window, now=now)
    assert check(keyring, target, now=now) == "/a"
    assert check(keyring, target, now=now + lifetime - 1) == "/a"
    assert rejection(keyring, target, now=now + lifetime + window) is Reason.EXPIRED


@given(alg=algorithms, lifetime=st.integers(1, 30 * 86400), bound=st.integers(1, 30 * 86400))
def test_a_lifetime_over_the_verifiers_bound_says_lifetime_exceeded(
    alg: Algorithm, lifetime: int, bound: int
) -> None:
    keyring = KEYRINGS[alg]
    target = sign_path("/a", keyring, expires_in=lifetime, now=NOW, max_lifetime=30 * 86400)
    path, _, query = target.partition("?")

    def verified() -> str:
        return verify(
            keyring,
            method="GET",
            raw_path=path,
            raw_query=query,
            client_ip=CLIENT,
            now=NOW,
            skew=0,
            max_lifetime=bound,
        ).path

    if lifetime <= bound:
        assert verified() == "/a"
    else:
        with pytest.raises(Rejected) as caught:
            verified()
        assert caught.value.reason is Reason.LIFETIME_EXCEEDED
