"""Where the token travels: path, query or cookie, reduced to one target to verify."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cookies import cookie_header
from gateway.token_source import COOKIE_NAME, MAX_COOKIES, Form, cookie_values, locate
from signer import Reason, Rejected
from signer.format import Claims, encode_payload, path_form

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
