"""Specification of `gateway.http.upload_rules.upload_plan`: an upload's headers against its
signed limits.

Everything here is decided before a single body byte is read.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import Refusal
from gateway.http.upload_rules import (
    DEFAULT_CONTENT_TYPE,
    BodyPlan,
    media_type,
    storable_type,
    type_allowed,
    upload_plan,
)
from signer.format import Claims

LENGTH_REQUIRED = Refusal.LENGTH_REQUIRED
TOO_LARGE = Refusal.TOO_LARGE
TOO_SMALL = Refusal.TOO_SMALL
WRONG_TYPE = Refusal.UNSUPPORTED_MEDIA_TYPE
ENCODED = Refusal.UNSUPPORTED_CONTENT_ENCODING

BOUND = 1000  # the gateway's max_upload_bytes in these tests


class Constraints(TypedDict, total=False):
    """The claims that limit an upload's body."""

    min_bytes: int | None
    max_bytes: int | None
    content_type: str | None


def put_claims(**constraints: Unpack[Constraints]) -> Claims:
    return Claims(expires=2, key_id="k1", issued=1, method="PUT", **constraints).validate()


def judge(
    claims: Claims | None = None,
    *,
    length: int | None = 10,
    chunked: bool = False,
    content_type: str | None = "application/octet-stream",
    content_encoding: str | None = None,
    more_encodings: tuple[str, ...] = (),
    bound: int = BOUND,
) -> BodyPlan | Refusal:
    return upload_plan(
        claims or put_claims(),
        content_length=length,
        chunked=chunked,
        content_type=content_type,
        content_encodings=(() if content_encoding is None else (content_encoding,))
        + more_encodings,
        max_upload_bytes=bound,
    )


# --- framing and size ---------------------------------------------------------------------------


def test_a_body_with_neither_length_nor_chunking_is_411() -> None:
    assert judge(length=None, chunked=False) == LENGTH_REQUIRED


@pytest.mark.parametrize(
    ("constraints", "length", "expected"),
    [
        ({}, 0, None),
        ({}, BOUND, None),
        ({}, BOUND + 1, TOO_LARGE),
        ({"max_bytes": 10}, 10, None),
        ({"max_bytes": 10}, 11, TOO_LARGE),
        ({"max_bytes": 10 * BOUND}, BOUND + 1, TOO_LARGE),  # the gateway's bound still holds
        ({"min_bytes": 5}, 5, None),
        ({"min_bytes": 5}, 4, TOO_SMALL),
        ({"min_bytes": 5}, 0, TOO_SMALL),
        ({"min_bytes": 5, "max_bytes": 5}, 5, None),
    ],
)
def test_a_content_length_is_judged_against_min_max_and_the_bound(
    constraints: Constraints, length: int, expected: Refusal | None
) -> None:
    result = judge(put_claims(**constraints), length=length)

    if expected is None:
        assert isinstance(result, BodyPlan)
        assert result.length == length
    else:
        assert result == expected


@pytest.mark.parametrize(
    ("constraints", "limit", "minimum"),
    [({}, BOUND, 0), ({"max_bytes": 10}, 10, 0), ({"min_bytes": 3, "max_bytes": 10**9}, BOUND, 3)],
)
def test_a_chunked_body_is_accepted_with_the_limits_to_count_against(
    constraints: Constraints, limit: int, minimum: int
) -> None:
    result = judge(put_claims(**constraints), length=None, chunked=True)

    assert result == BodyPlan(None, minimum, limit, DEFAULT_CONTENT_TYPE)


@given(
    length=st.integers(0, 3 * BOUND),
    low=st.none() | st.integers(0, 2 * BOUND),
    high=st.none() | st.integers(0, 2 * BOUND),
)
def test_a_length_is_accepted_exactly_inside_the_effective_range(
    length: int, low: int | None, high: int | None
) -> None:
    if low is not None and high is not None and low > high:
        low, high = high, low
    result = judge(put_claims(min_bytes=low, max_bytes=high), length=length)

    inside = (low or 0) <= length <= min(BOUND, BOUND if high is None else high)
    assert isinstance(result, BodyPlan) is inside
    if isinstance(result, BodyPlan):
        assert result.minimum <= length <= result.limit


# --- content type and encoding --------------------------------------------------------------


@pytest.mark.parametrize(
    ("signed", "header", "allowed"),
    [
        (None, None, True),
        (None, "text/html", True),
        ("image/png", "image/png", True),
        ("image/png", "IMAGE/PNG", True),
        ("image/png", "image/png; q=1", True),
        ("image/png", " image/png ", True),
        ("image/png", "image/jpeg", False),
        ("image/png", "image/pngx", False),
        ("image/png", None, False),
        ("image/", "image/webp", True),
        ("image/", "image/svg+xml", True),
        ("image/", "imagex/png", False),
        ("image/", "text/plain", False),
        ("image/", "image/", False),
        ("image/", "image", False),
        ("text/plain", "text/plain; charset=utf-8", True),
        (None, "not a type", False),
        (None, "text/plain\u00e9", False),
        (None, "", False),
    ],
)
def test_the_content_type_must_match_the_signed_one(
    signed: str | None, header: str | None, allowed: bool
) -> None:
    claims = put_claims(content_type=signed) if signed else put_claims()

    result = judge(claims, content_type=header)

    assert isinstance(result, BodyPlan) is allowed
    if not allowed:
        assert result == WRONG_TYPE


@pytest.mark.parametrize(
    ("header", "stored"),
    [
        (None, "application/octet-stream"),
        ("image/png", "image/png"),
        (" text/plain; charset=utf-8 ", "text/plain; charset=utf-8"),
    ],
)
def test_the_stored_content_type_is_the_one_sent(header: str | None, stored: str) -> None:
    result = judge(content_type=header)

    assert isinstance(result, BodyPlan)
    assert result.content_type == stored


@pytest.mark.parametrize(
    ("encoding", "accepted"),
    [(None, True), ("identity", True), ("", True), ("gzip", False), ("br", False)],
)
def test_an_encoded_body_is_refused(encoding: str | None, accepted: bool) -> None:
    result = judge(content_encoding=encoding)

    assert isinstance(result, BodyPlan) is accepted
    if not accepted:
        assert result == ENCODED


def test_refusals_carry_their_status_and_code() -> None:
    assert [(r.status, r.code) for r in (LENGTH_REQUIRED, TOO_LARGE, TOO_SMALL, WRONG_TYPE)] == [
        (411, "length_required"),
        (413, "too_large"),
        (400, "too_small"),
        (415, "unsupported_media_type"),
    ]


@given(st.text(max_size=40))
def test_media_type_never_raises_and_is_lower_case(header: str) -> None:
    media = media_type(header)

    assert media is None or (media == media.lower() and media.count("/") == 1)


@given(st.sampled_from(["image/", "video/", "text/"]), st.text(max_size=20))
def test_a_type_prefix_allows_only_types_that_start_with_it(prefix: str, media: str) -> None:
    assert type_allowed(prefix, media) is media.startswith(prefix)


@pytest.mark.parametrize(
    "header",
    [
        "image/png;,text/html",
        "image/png;x=y,text/html",
        "image/png, text/html",
        'image/png; x=","',
        "image/png; x",
        "image/png; =y",
        "image/png x",
        "image/png;x=y z",
    ],
)
def test_a_content_type_that_is_not_exactly_one_media_type_is_refused(header: str) -> None:
    assert judge(content_type=header) == WRONG_TYPE


@pytest.mark.parametrize(
    ("header", "stored"),
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("text/plain;charset=UTF-8", "text/plain; charset=UTF-8"),
        ("text/plain ; Charset=utf-8 ;", "text/plain; charset=utf-8"),
        ('text/plain; name="a b"', 'text/plain; name="a b"'),
        ("image/png;;", "image/png"),
    ],
)
def test_the_stored_content_type_is_re_serialised_from_its_parts(header: str, stored: str) -> None:
    result = judge(content_type=header)

    assert isinstance(result, BodyPlan)
    assert result.content_type == stored


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60))
def test_a_stored_content_type_is_one_media_type_and_stable(header: str) -> None:
    stored = storable_type(header)
    if stored is not None:
        assert "," not in stored
        assert media_type(stored) == media_type(header)
        assert storable_type(stored) == stored


def test_two_content_encodings_are_refused_even_when_one_is_identity() -> None:
    assert judge(content_encoding="identity", more_encodings=("gzip",)) == ENCODED
    assert judge(content_encoding="identity", more_encodings=("identity",)) == ENCODED
