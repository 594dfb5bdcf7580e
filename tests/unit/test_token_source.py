"""Where the token travels: path, query or cookie, reduced to one target to verify."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cookies import cookie_header
from gateway.errors import Refusal, Refused
from gateway.token_source import (
    COOKIE_NAME,
    MAX_COOKIES,
    Form,
    Presented,
    candidates,
    cookie_values,
    first_verified,
    locate,
)
from signer import (
    Algorithm,
    Keyring,
    Reason,
    Rejected,
    Status,
    Verified,
    new_key,
    sign_path,
    verify,
)
from signer.format import Claims, decode_payload, encode_payload, path_form
from signer.schemes import SCHEMES
from tests.conftest import NOW

TOKEN = "Expires=2000000000&KeyID=k1&Issued=1900000000&Prefix=/hls/ep1/&Signature=AAAA"
OTHER = "Expires=2000000000&KeyID=k1&Issued=1900000000&Prefix=/hls/ep2/&Signature=BBBB"
PAYLOAD = encode_payload(TOKEN)
SEGMENT = "/hls/ep1/720p/seg001.ts"


def cookie(*payloads: str) -> list[str]:
    return ["; ".join(f"{COOKIE_NAME}={p}" for p in payloads)]


def test_a_path_form_target_is_verified_as_sent() -> None:
    target = path_form(f"{SEGMENT}?{TOKEN}")
    presented = locate(target, "", cookie(PAYLOAD))
    assert (presented.form, presented.raw_path, presented.raw_query) == (Form.PATH, target, "")


def test_a_query_token_wins_over_a_cookie() -> None:
    presented = locate(SEGMENT, OTHER, cookie(PAYLOAD))
    assert (presented.form, presented.raw_query) == (Form.QUERY, OTHER)


@pytest.mark.parametrize("query", ["", "w=640"])
def test_without_a_token_in_the_url_the_cookie_query_goes_with_the_request_path(
    query: str,
) -> None:
    presented = locate(SEGMENT, query, cookie(PAYLOAD))
    assert (presented.form, presented.raw_path, presented.raw_query) == (
        Form.COOKIE,
        SEGMENT,
        TOKEN,
    )


def test_without_any_token_verification_will_say_missing() -> None:
    assert locate(SEGMENT, "", ["theme=dark"]) == locate(SEGMENT, "", [])
    assert locate(SEGMENT, "", []).form is Form.QUERY


def test_among_several_cookies_the_one_whose_prefix_covers_the_path_is_chosen() -> None:
    presented = locate(SEGMENT, "", cookie(encode_payload(OTHER), PAYLOAD))
    assert presented.raw_query == TOKEN


def test_an_undecodable_cookie_is_skipped_when_another_is_good() -> None:
    assert locate(SEGMENT, "", cookie("not*base64", PAYLOAD)).raw_query == TOKEN


def test_undecodable_cookies_do_not_use_up_the_cookies_looked_at() -> None:
    assert locate(SEGMENT, "", cookie(*["not*base64"] * 50, PAYLOAD)).raw_query == TOKEN


@pytest.mark.parametrize("value", ["not*base64", "", "YQ==", "w6k"])
def test_only_undecodable_cookies_are_a_malformed_token(value: str) -> None:
    with pytest.raises(Rejected) as caught:
        locate(SEGMENT, "", cookie(value))
    assert caught.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([f"a=1; {COOKIE_NAME}=x; b=2"], ["x"]),
        ([f"{COOKIE_NAME}=x", f"{COOKIE_NAME}=y"], ["x", "y"]),
        ([f'{COOKIE_NAME}="x"'], ["x"]),
        ([f"{COOKIE_NAME.lower()}=x; {COOKIE_NAME}"], []),
    ],
)
def test_cookie_values_keeps_every_value_of_the_name_in_order(
    headers: list[str], expected: list[str]
) -> None:
    assert cookie_values(headers, COOKIE_NAME) == expected


def test_at_most_a_few_cookies_are_looked_at() -> None:
    assert len(cookie_values(cookie(*["x"] * 50), COOKIE_NAME)) == MAX_COOKIES


@given(st.lists(st.text(), max_size=4))
def test_cookie_parsing_never_raises(headers: list[str]) -> None:
    cookie_values(headers, COOKIE_NAME)


# --- choosing among several cookies by verifying them ---------------------------------------

KEYRING = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE, now=NOW)])
FORGER = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE, now=NOW)])  # same id, other key


def prefix_cookie(
    keyring: Keyring = KEYRING, prefix: str = "/hls/ep1/", expires_in: int = 600
) -> str:
    """The cookie a prefix token gives (the payload of its query), signed at NOW."""
    target = sign_path(
        prefix + "master.m3u8", keyring, prefix=prefix, expires_in=expires_in, now=NOW
    )
    return encode_payload(target.partition("?")[2])


GOOD = prefix_cookie()
FORGED = prefix_cookie(FORGER)  # claims a Prefix covering the path, signed by another key
WIDER_FORGED = prefix_cookie(FORGER, prefix="/")
EXPIRED = prefix_cookie(expires_in=60)
JUNK = {
    "undecodable": "x",
    "not ASCII": "w6k",
    "no token block": encode_payload("w=640"),
    "empty": "",
}


class Counting:
    """The gateway's verification at NOW + 1, counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, presented: Presented) -> Verified:
        self.calls += 1
        return verify(
            KEYRING,
            method="GET",
            raw_path=presented.raw_path,
            raw_query=presented.raw_query,
            client_ip=None,
            now=NOW + 120,
        )


def chosen(*payloads: str) -> tuple[Presented, Verified]:
    return first_verified(candidates(SEGMENT, "", cookie(*payloads)), Counting())


def refusal(*payloads: str) -> Reason:
    with pytest.raises(Rejected) as caught:
        chosen(*payloads)
    return caught.value.reason


@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
@pytest.mark.parametrize("count", [MAX_COOKIES, 50])
def test_junk_cookies_before_the_good_one_do_not_hide_it(junk: str, count: int) -> None:
    presented, verified = chosen(*[junk] * count, GOOD)
    assert (presented.form, verified.path) == (Form.COOKIE, SEGMENT)


@pytest.mark.parametrize("forged", [FORGED, WIDER_FORGED])
def test_a_forged_cookie_claiming_the_path_sent_first_does_not_hide_the_good_one(
    forged: str,
) -> None:
    presented, verified = chosen(forged, GOOD)
    assert presented.raw_query == decode(GOOD)
    assert verified.path == SEGMENT


def test_the_good_cookie_is_verified_first_when_its_prefix_covers_the_path() -> None:
    verify_ = Counting()
    other_stream = prefix_cookie(prefix="/hls/ep2/")
    presented, _ = first_verified(candidates(SEGMENT, "", cookie(other_stream, GOOD)), verify_)
    assert (presented.raw_query, verify_.calls) == (decode(GOOD), 1)


def test_at_most_a_few_token_cookies_are_verified() -> None:
    verify_ = Counting()
    presented = candidates(SEGMENT, "", cookie(*[FORGED] * 50, GOOD))
    with pytest.raises(Rejected) as caught:
        first_verified(presented, verify_)
    assert (caught.value.reason, verify_.calls) == (Reason.BAD_SIGNATURE, MAX_COOKIES)


@pytest.mark.parametrize(
    ("payloads", "reason"),
    [
        ((FORGED,), Reason.BAD_SIGNATURE),
        ((FORGED, EXPIRED), Reason.EXPIRED),  # an authentic cookie's reason says the most
        ((EXPIRED, FORGED), Reason.EXPIRED),
        ((prefix_cookie(prefix="/hls/ep2/"), EXPIRED), Reason.EXPIRED),  # the one for this path
        ((JUNK["undecodable"], FORGED), Reason.BAD_SIGNATURE),
        ((JUNK["no token block"],), Reason.MALFORMED),
    ],
)
def test_when_no_cookie_verifies_the_most_telling_reason_is_given(
    payloads: tuple[str, ...], reason: Reason
) -> None:
    assert refusal(*payloads) is reason


def test_a_token_in_the_url_is_the_only_candidate() -> None:
    assert [p.form for p in candidates(SEGMENT, OTHER, cookie(GOOD))] == [Form.QUERY]
    assert [p.form for p in candidates(path_form(f"{SEGMENT}?{OTHER}"), "", cookie(GOOD))] == [
        Form.PATH
    ]


@given(st.lists(st.text(), max_size=4), st.text(max_size=30))
def test_candidates_are_few_or_a_malformed_token(headers: list[str], path: str) -> None:
    try:
        count, reason = len(candidates("/" + path, "", headers)), None
    except Rejected as exc:
        count, reason = 0, exc.reason
    assert 1 <= count <= MAX_COOKIES if reason is None else reason is Reason.MALFORMED


def decode(payload: str) -> str:
    return decode_payload(payload, "test")


# --- the cookie the gateway sets ------------------------------------------------------------

CLAIMS = Claims(expires=2000, key_id="k1", issued=1000, prefix="/hls/ep 1/")


def test_the_cookie_is_scoped_to_the_prefix_and_lives_as_long_as_the_token() -> None:
    header = cookie_header(PAYLOAD, CLAIMS, same_site="Lax", secure=True, now=1500)
    assert header == (
        f"{COOKIE_NAME}={PAYLOAD}; Path=/hls/ep%201/; Max-Age=500; HttpOnly; SameSite=Lax; Secure"
    )


def test_without_tls_the_cookie_is_not_marked_secure() -> None:
    header = cookie_header(PAYLOAD, CLAIMS, same_site="Strict", secure=False, now=2500)
    assert header.endswith("Max-Age=0; HttpOnly; SameSite=Strict")


# --- links of other schemes (signer.schemes) --------------------------------------------------

SIGV4_QUERY = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab"


def test_a_sigv4_link_is_its_own_single_candidate_whatever_the_cookies() -> None:
    assert candidates("/media/a.txt", SIGV4_QUERY, cookie(PAYLOAD)) == [
        Presented(Form.QUERY, "/media/a.txt", SIGV4_QUERY, "sigv4")
    ]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/media/a.txt", f"{SIGV4_QUERY}&{TOKEN}"),
        (f"/token={PAYLOAD}/media/a.txt", SIGV4_QUERY),
    ],
    ids=["query-token", "path-token"],
)
def test_a_sigv4_link_with_our_token_is_refused_as_ambiguous(path: str, query: str) -> None:
    with pytest.raises(Refused) as caught:
        candidates(path, query, [])
    assert caught.value.refusal is Refusal.AMBIGUOUS_LINK


class _CookieScheme:
    """A scheme whose links come in a `Scheme-Token` header: `carried` is all candidates asks."""

    name = "cookie-scheme"

    def detects(self, raw_query: str) -> bool:
        return False

    def carried(self, header: Callable[[str], Sequence[str]]) -> bool:
        return bool(header("Scheme-Token"))


@pytest.fixture
def cookie_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, _CookieScheme.name, _CookieScheme())


def _headers(**sent: str) -> Callable[[str], Sequence[str]]:
    return lambda name: [v for k, v in sent.items() if k.replace("_", "-").lower() == name.lower()]


@pytest.mark.usefixtures("cookie_scheme")
def test_a_link_carried_in_headers_is_a_candidate_after_the_token_cookies() -> None:
    found = candidates(SEGMENT, "", cookie(PAYLOAD), _headers(Scheme_Token="x"))
    assert [(p.form, p.scheme) for p in found] == [
        (Form.COOKIE, "edge"),
        (Form.COOKIE, "cookie-scheme"),
    ]


@pytest.mark.usefixtures("cookie_scheme")
def test_a_link_carried_in_headers_is_a_candidate_when_the_token_cookie_is_junk() -> None:
    found = candidates(SEGMENT, "", cookie("not*base64"), _headers(Scheme_Token="x"))
    assert [p.scheme for p in found] == ["cookie-scheme"]


@pytest.mark.usefixtures("cookie_scheme")
def test_the_url_wins_over_a_link_carried_in_headers() -> None:
    found = candidates(SEGMENT, TOKEN, [], _headers(Scheme_Token="x"))
    assert [(p.form, p.scheme) for p in found] == [(Form.QUERY, "edge")]


@pytest.mark.usefixtures("cookie_scheme")
def test_without_a_carried_link_the_headers_add_no_candidate() -> None:
    found = candidates(SEGMENT, "", cookie(PAYLOAD), _headers(Other="x"))
    assert [p.scheme for p in found] == ["edge"]
