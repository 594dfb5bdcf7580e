"""Specification of conditional requests (RFC 9110 §13): evaluation order, If-Range, dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.http.conditionals import (
    Outcome,
    Validators,
    evaluate,
    format_http_date,
    if_range_allows,
    parse_http_date,
)

LAST_MODIFIED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LM = "Wed, 01 May 2024 12:00:00 GMT"  # == LAST_MODIFIED
BEFORE = "Wed, 01 May 2024 11:59:59 GMT"  # one second earlier
AFTER = "Wed, 01 May 2024 12:00:01 GMT"  # one second later

STRONG = Validators(etag='"abc"', last_modified=LAST_MODIFIED)
WEAK = Validators(etag='W/"abc"', last_modified=LAST_MODIFIED)
NO_ETAG = Validators(etag=None, last_modified=LAST_MODIFIED)
NO_DATE = Validators(etag='"abc"', last_modified=None)
NOTHING = Validators(etag=None, last_modified=None)

P, NM, PF = Outcome.PROCEED, Outcome.NOT_MODIFIED, Outcome.PRECONDITION_FAILED

header_text = st.none() | st.text() | st.sampled_from(["*", '"abc"', 'W/"abc"', LM, BEFORE, AFTER])
any_validators = st.sampled_from([STRONG, WEAK, NO_ETAG, NO_DATE, NOTHING])
methods = st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "POST", "get"])


def check(
    validators: Validators = STRONG,
    *,
    method: str = "GET",
    if_match: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_unmodified_since: str | None = None,
) -> Outcome:
    return evaluate(
        method, if_match, if_none_match, if_modified_since, if_unmodified_since, validators
    )


# --- dates -----------------------------------------------------------------------------------

EXPECTED_1994 = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT", id="imf-fixdate"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", id="rfc850"),
        pytest.param("Sun Nov  6 08:49:37 1994", id="asctime"),
        pytest.param("Sun, 06 Nov 1994 10:49:37 +0200", id="numeric-offset"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 -0000", id="unknown-zone"),
    ],
)
def test_every_http_date_format_parses_to_the_same_utc_instant(value: str) -> None:
    """IMF-fixdate and the obsolete forms all denote one aware UTC datetime."""
    parsed = parse_http_date(value)
    assert parsed == EXPECTED_1994
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "yesterday",
        "0",
        "1714564800",
        "2024-05-01T12:00:00Z",
        "Wed, 32 May 2024 12:00:00 GMT",
        "Wed, 01 Foo 2024 12:00:00 GMT",
        "Wed, 01 May 2024 25:00:00 GMT",
        "Wed, 01 May 99999 12:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 -0100",
    ],
)
def test_invalid_http_date_parses_to_none(value: str) -> None:
    """Anything that is not an HTTP-date is reported as None, never as an exception."""
    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (EXPECTED_1994, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (LAST_MODIFIED, LM),
        (datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))), LM),
        (datetime(2024, 5, 1, 12, 0, 0, 999_999, tzinfo=UTC), LM),
    ],
)
def test_format_http_date_writes_imf_fixdate_in_gmt(moment: datetime, expected: str) -> None:
    """Any aware datetime is written as IMF-fixdate in GMT, truncated to the second."""
    assert format_http_date(moment) == expected


def test_format_http_date_refuses_naive_datetime() -> None:
    """A naive datetime has no defined instant, so guessing a zone would mislabel it."""
    with pytest.raises(ValueError, match="timezone-aware"):
        format_http_date(datetime(2024, 5, 1, 12, 0, 0))


@given(
    moment=st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )
)
def test_formatted_date_parses_back_to_the_same_second(moment: datetime) -> None:
    """format_http_date and parse_http_date round-trip at one-second resolution."""
    assert parse_http_date(format_http_date(moment)) == moment.replace(microsecond=0)


@given(value=st.text())
def test_parse_http_date_never_raises_and_is_always_utc(value: str) -> None:
    """Arbitrary text yields None or an aware UTC datetime."""
    parsed = parse_http_date(value)
    assert parsed is None or parsed.utcoffset() == timedelta(0)


def test_validators_refuse_naive_last_modified() -> None:
    """Naive metadata would break every date comparison, so it fails where it is built."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Validators(etag=None, last_modified=datetime(2024, 5, 1))


# --- step 1: If-Match ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_match", "validators", "expected"),
    [
        ('"abc"', STRONG, P),
        ('"xyz", "abc"', STRONG, P),
        (' "xyz" ,"abc" ', STRONG, P),
        ('"xyz",,"abc"', STRONG, P),
        ('junk, "abc"', STRONG, P),
        ('"abc", junk', STRONG, P),
        ("*", STRONG, P),
        (" * ", STRONG, P),
        ("*", WEAK, P),
        ("*", NO_ETAG, P),
        ("*", NOTHING, P),
        ('"xyz"', STRONG, PF),
        ('W/"abc"', STRONG, PF),
        ('"abc"', WEAK, PF),
        ('W/"abc"', WEAK, PF),
        ('"abc"', NO_ETAG, PF),
        ('"ABC"', STRONG, PF),
        ("abc", STRONG, PF),
        ('"abc', STRONG, PF),
        ('"a" "abc"', STRONG, PF),
        ('w/"abc"', STRONG, PF),
        ('"xyz", *', STRONG, PF),
        ("", STRONG, PF),
    ],
)
def test_if_match_requires_a_strong_match(
    if_match: str, validators: Validators, expected: Outcome
) -> None:
    """If-Match passes on "*" or a strong match with any listed tag; otherwise it is a 412."""
    assert check(validators, if_match=if_match) is expected
    assert check(validators, method="PUT", if_match=if_match) is expected


def test_if_match_list_keeps_commas_inside_entity_tags() -> None:
    """Commas are legal inside an opaque-tag, so the list is not naively split on them."""
    validators = Validators(etag='"a,b"', last_modified=None)
    assert check(validators, if_match='"x", "a,b"') is P
    assert check(validators, if_match='"a", "b"') is PF


def test_if_match_takes_precedence_over_if_unmodified_since() -> None:
    """When If-Match is present, If-Unmodified-Since is not evaluated at all."""
    assert check(if_match='"abc"', if_unmodified_since=BEFORE) is P


def test_if_match_failure_wins_over_if_none_match() -> None:
    """A failed If-Match is a 412 even when If-None-Match would have produced a 304."""
    assert check(if_match='"xyz"', if_none_match='"abc"') is PF


# --- step 2: If-Unmodified-Since -------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_unmodified_since", "validators", "expected"),
    [
        (LM, STRONG, P),
        (AFTER, STRONG, P),
        (BEFORE, STRONG, PF),
        ("Wednesday, 01-May-24 11:59:59 GMT", STRONG, PF),
        ("Wed May  1 11:59:59 2024", STRONG, PF),
        ("Wed, 01 May 2024 13:59:59 +0200", STRONG, PF),
        ("not a date", STRONG, P),
        ("", STRONG, P),
        (BEFORE, NO_DATE, P),
        (BEFORE, NOTHING, P),
    ],
)
def test_if_unmodified_since_fails_when_modified_after_the_date(
    if_unmodified_since: str, validators: Validators, expected: Outcome
) -> None:
    """412 only for a valid date older than a known Last-Modified; otherwise it is ignored."""
    assert check(validators, if_unmodified_since=if_unmodified_since) is expected


def test_if_unmodified_since_ignores_sub_second_modification_time() -> None:
    """Dates compare at one-second resolution, so a fractional mtime equals its HTTP-date."""
    validators = Validators(etag=None, last_modified=LAST_MODIFIED.replace(microsecond=900_000))
    assert check(validators, if_unmodified_since=LM) is P


# --- step 3: If-None-Match -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_none_match", "validators", "matches"),
    [
        ('"abc"', STRONG, True),
        ('W/"abc"', STRONG, True),
        ('"abc"', WEAK, True),
        ('W/"abc"', WEAK, True),
        ('"xyz", W/"abc"', STRONG, True),
        ('junk, "abc"', STRONG, True),
        ("*", STRONG, True),
        ("*", NO_ETAG, True),
        ("*", NOTHING, True),
        ('"xyz"', STRONG, False),
        ('"ABC"', STRONG, False),
        ('"abc"', NO_ETAG, False),
        ('W/"abc"', NOTHING, False),
        ("abc", STRONG, False),
        ('"abc', STRONG, False),
        ('"xyz", *', STRONG, False),
        ("", STRONG, False),
    ],
)
@pytest.mark.parametrize(
    ("method", "on_match"),
    [("GET", NM), ("HEAD", NM), ("PUT", PF), ("DELETE", PF), ("POST", PF), ("get", PF)],
)
def test_if_none_match_uses_weak_comparison(
    if_none_match: str, validators: Validators, matches: bool, method: str, on_match: Outcome
) -> None:
    """A weak match or "*" is 304 for GET/HEAD and 412 for other methods; no match proceeds."""
    expected = on_match if matches else P
    assert check(validators, method=method, if_none_match=if_none_match) is expected


def test_if_none_match_is_evaluated_after_a_passing_if_match() -> None:
    """Both headers apply in order: a passing If-Match does not short-circuit If-None-Match."""
    assert check(if_match='"abc"', if_none_match='"abc"') is NM


def test_if_none_match_is_evaluated_after_a_passing_if_unmodified_since() -> None:
    """A satisfied If-Unmodified-Since still lets If-None-Match produce a 304."""
    assert check(if_unmodified_since=AFTER, if_none_match="*") is NM


# --- step 4: If-Modified-Since ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_modified_since", "validators", "method", "expected"),
    [
        (LM, STRONG, "GET", NM),
        (AFTER, STRONG, "GET", NM),
        (LM, STRONG, "HEAD", NM),
        ("Wed May  1 12:00:00 2024", STRONG, "GET", NM),
        (BEFORE, STRONG, "GET", P),
        (LM, STRONG, "PUT", P),
        (LM, STRONG, "POST", P),
        (LM, NO_DATE, "GET", P),
        ("not a date", STRONG, "GET", P),
        ("", STRONG, "GET", P),
    ],
)
def test_if_modified_since_is_not_modified_when_unchanged_since_the_date(
    if_modified_since: str, validators: Validators, method: str, expected: Outcome
) -> None:
    """304 for GET/HEAD when Last-Modified is at or before a valid date; ignored otherwise."""
    assert check(validators, method=method, if_modified_since=if_modified_since) is expected


def test_if_modified_since_ignores_sub_second_modification_time() -> None:
    """An mtime a fraction of a second past the HTTP-date the client holds is not a change."""
    validators = Validators(etag=None, last_modified=LAST_MODIFIED.replace(microsecond=500_000))
    assert check(validators, if_modified_since=LM) is NM


@pytest.mark.parametrize("if_none_match", ['"xyz"', "junk", ""])
def test_if_none_match_presence_disables_if_modified_since(if_none_match: str) -> None:
    """Even a non-matching If-None-Match makes the date check irrelevant (entity-tags win)."""
    assert check(if_none_match=if_none_match, if_modified_since=AFTER) is P


@pytest.mark.parametrize(
    ("kwargs", "validators"),
    [
        ({}, STRONG),
        ({}, NOTHING),
        ({"if_match": "*"}, NOTHING),
        ({"if_unmodified_since": "garbage"}, STRONG),
        ({"if_modified_since": "garbage"}, STRONG),
    ],
)
def test_no_effective_precondition_proceeds(kwargs: dict[str, str], validators: Validators) -> None:
    """Without a condition that applies, the request is served normally."""
    assert check(validators, **kwargs) is P


@given(
    method=methods,
    if_match=header_text,
    if_none_match=header_text,
    if_modified_since=header_text,
    if_unmodified_since=header_text,
    validators=any_validators,
)
def test_evaluate_never_raises_on_arbitrary_headers(
    method: str,
    if_match: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    if_unmodified_since: str | None,
    validators: Validators,
) -> None:
    """Client header text can only select an outcome; it cannot make evaluation fail."""
    outcome = evaluate(
        method, if_match, if_none_match, if_modified_since, if_unmodified_since, validators
    )
    assert isinstance(outcome, Outcome)
    if method not in ("GET", "HEAD"):
        assert outcome is not Outcome.NOT_MODIFIED


@given(
    opaque=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='"'),
        max_size=20,
    ),
    others=st.lists(st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), max_size=8)),
    weak=st.booleans(),
)
def test_own_etag_is_always_found_in_a_list(opaque: str, others: list[str], weak: bool) -> None:
    """An entity-tag listed among others matches, whatever legal characters it contains."""
    tag = f'"{opaque}"'
    validators = Validators(etag=("W/" if weak else "") + tag, last_modified=None)
    listed = ", ".join([*(f'"{o}x{opaque}"' for o in others), tag])
    assert check(validators, if_none_match=listed) is NM
    assert check(validators, if_match=listed) is (PF if weak else P)


# --- If-Range --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "validators", "allowed"),
    [
        (None, STRONG, True),
        (None, NOTHING, True),
        ('"abc"', STRONG, True),
        (' "abc" ', STRONG, True),
        (LM, STRONG, True),
        ("Wednesday, 01-May-24 12:00:00 GMT", STRONG, True),
        ("Wed May  1 12:00:00 2024", STRONG, True),
        (LM, NO_ETAG, True),
        ('"xyz"', STRONG, False),
        ('W/"abc"', STRONG, False),
        ('"abc"', WEAK, False),
        ('W/"abc"', WEAK, False),
        ('"abc"', NO_ETAG, False),
        ('"abc", "xyz"', STRONG, False),
        ('"abc', STRONG, False),
        ("*", STRONG, False),
        (BEFORE, STRONG, False),
        (AFTER, STRONG, False),
        (LM, NO_DATE, False),
        ("not a date", STRONG, False),
        ("", STRONG, False),
    ],
)
def test_if_range_allows_range_only_for_an_exact_strong_match(
    if_range: str | None, validators: Validators, allowed: bool
) -> None:
    """A Range is honoured only when If-Range is absent, strongly matches, or equals the date."""
    assert if_range_allows(if_range, validators) is allowed


def test_if_range_date_matches_at_one_second_resolution() -> None:
    """A fractional Last-Modified equals the HTTP-date it was sent to the client as."""
    validators = Validators(etag=None, last_modified=LAST_MODIFIED.replace(microsecond=1))
    assert if_range_allows(LM, validators) is True


@given(if_range=st.none() | st.text(), validators=any_validators)
def test_if_range_allows_never_raises_on_arbitrary_text(
    if_range: str | None, validators: Validators
) -> None:
    """Any If-Range text yields a decision; unparseable text never allows a range."""
    allowed = if_range_allows(if_range, validators)
    assert isinstance(allowed, bool)
    if if_range is not None and if_range.strip(" \t") not in ('"abc"', LM) and allowed:
        # Only spellings of the current validators may allow a range.
        assert parse_http_date(if_range) == LAST_MODIFIED
