"""Specification of `gateway.http.plan`: the answer to a GET or HEAD, planned from the request's
headers and the object's metadata without a server.

Every range and conditional case the integration suites check against real storage is here as
a plan (tests/integration/test_gateway_s3.py, test_media.py), with the RFC 9110 §13.2.2 order
of preconditions, If-Range, and the headers each plan is answered with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.http.conditionals import format_http_date
from gateway.http.plan import (
    CONDITIONAL,
    NOT_MODIFIED,
    OK,
    PRECONDITION_FAILED,
    UNSATISFIABLE,
    Plan,
    is_conditional,
    object_headers,
    plan,
    storage_range,
)
from gateway.http.ranges import ByteRange, parse_range
from gateway.storage import ObjectMeta

SIZE = 1000
ETAG = '"abc"'
LAST_MODIFIED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LM = "Wed, 01 May 2024 12:00:00 GMT"  # == LAST_MODIFIED
EARLIER = format_http_date(LAST_MODIFIED - timedelta(hours=1))
LATER = format_http_date(LAST_MODIFIED + timedelta(hours=1))
CACHE_CONTROL = "private, max-age=300"

META = ObjectMeta(size=SIZE, etag=ETAG, last_modified=LAST_MODIFIED, content_type="text/plain")
WEAK = replace(META, etag='W/"abc"')  # a store that only has a weak validator
NO_VALIDATORS = replace(META, etag=None, last_modified=None)
DESCRIBED = replace(
    META,
    content_encoding="gzip",
    content_disposition='inline; filename="a.txt"',
    content_language="de",
)

#: What a 304 may carry (RFC 9110 §15.4.5); everything else of the 200 is left out.
NOT_MODIFIED_KEEPS = {"ETag", "Last-Modified", "Cache-Control", "Set-Cookie"}
METHODS = pytest.mark.parametrize("method", ["GET", "HEAD"])


def planned(headers: Mapping[str, str], method: str = "GET", meta: ObjectMeta = META) -> Plan:
    """Plan with headers as aiohttp hands them over: a case-insensitive multidict."""
    return plan(method, CIMultiDict(headers), meta)


def partial(start: int, end: int, size: int = SIZE) -> Plan:
    return Plan(206, ByteRange(start, end, size))


# --- 200 and 206 -----------------------------------------------------------------------------


@METHODS
@pytest.mark.parametrize(
    "headers",
    [{}, {"Accept": "*/*"}, {"Range": "bytes=0-1,5-6"}, {"If-Range": ETAG}],
    ids=["nothing", "unrelated", "multi-range", "if-range-without-range"],
)
def test_without_a_range_to_honour_or_a_precondition_the_whole_object_is_sent(
    method: str, headers: dict[str, str]
) -> None:
    assert planned(headers, method) == OK


@METHODS
@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-", 0, SIZE - 1),
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        (f"bytes={SIZE - 10}-{SIZE + 1000}", SIZE - 10, SIZE - 1),
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE - 1),
        (f"bytes=-{SIZE * 5}", 0, SIZE - 1),
        ("Bytes=10-19", 10, 19),
        ("bytes= 10-19 ,", 10, 19),
    ],
    ids=[
        "open",
        "first-byte",
        "closed",
        "suffix",
        "past-the-end",
        "last-byte",
        "suffix-longer-than-object",
        "unit-case",
        "whitespace",
    ],
)
def test_a_single_range_is_a_206_of_the_resolved_bytes(
    method: str, header: str, start: int, end: int
) -> None:
    assert planned({"Range": header}, method) == partial(start, end)


@METHODS
@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-6", "bytes=abc", "items=0-1", "bytes=10-5", "bytes=", ""],
    ids=["multi-range", "garbage", "other-unit", "first-after-last", "empty-set", "empty"],
)
def test_a_range_the_gateway_does_not_honour_is_a_200(method: str, header: str) -> None:
    assert planned({"Range": header}, method) == OK


@METHODS
@pytest.mark.parametrize(
    ("header", "size"),
    [
        (f"bytes={SIZE}-", SIZE),
        ("bytes=-0", SIZE),
        (f"bytes={SIZE * 5}-{SIZE * 6}", SIZE),
        ("bytes=0-", 0),
        ("bytes=-1", 0),
    ],
    ids=["starts-at-the-end", "zero-suffix", "far-past-the-end", "empty-object", "empty-suffix"],
)
def test_an_unsatisfiable_range_is_a_416(method: str, header: str, size: int) -> None:
    assert planned({"Range": header}, method, replace(META, size=size)) == UNSATISFIABLE


# --- If-Range ---------------------------------------------------------------------------------


@METHODS
@pytest.mark.parametrize(
    ("if_range", "meta", "honoured"),
    [
        (ETAG, META, True),
        (f" {ETAG} ", META, True),
        (LM, META, True),
        ("Wednesday, 01-May-24 12:00:00 GMT", META, True),
        (LM, replace(META, etag=None), True),
        ('"stale"', META, False),
        ('W/"abc"', META, False),
        (ETAG, WEAK, False),
        ('W/"abc"', WEAK, False),
        (ETAG, replace(META, etag=None), False),
        (f'{ETAG}, "other"', META, False),
        ("*", META, False),
        (EARLIER, META, False),
        (LATER, META, False),
        (LM, replace(META, last_modified=None), False),
        ("not a date", META, False),
        ("", META, False),
    ],
    ids=[
        "same-etag",
        "same-etag-ows",
        "same-date",
        "same-date-rfc850",
        "date-without-etag",
        "other-etag",
        "weak-tag",
        "weak-current",
        "both-weak",
        "no-current-etag",
        "a-list",
        "star",
        "earlier-date",
        "later-date",
        "no-current-date",
        "garbage",
        "empty",
    ],
)
def test_if_range_honours_the_range_only_for_a_strong_match_or_the_exact_date(
    method: str, if_range: str, meta: ObjectMeta, honoured: bool
) -> None:
    expected = partial(0, 4) if honoured else OK
    assert planned({"Range": "bytes=0-4", "If-Range": if_range}, method, meta) == expected


@pytest.mark.parametrize(("if_range", "expected"), [(ETAG, UNSATISFIABLE), ('"stale"', OK)])
def test_a_failing_if_range_sends_the_whole_object_even_for_an_unsatisfiable_range(
    if_range: str, expected: Plan
) -> None:
    """The client's copy is stale: it needs the whole object, not an error about its range."""
    assert planned({"Range": f"bytes={SIZE}-", "If-Range": if_range}) == expected


# --- If-None-Match and If-Modified-Since: 304 -------------------------------------------------


@METHODS
@pytest.mark.parametrize(
    ("if_none_match", "meta", "expected"),
    [
        (ETAG, META, NOT_MODIFIED),
        ("*", META, NOT_MODIFIED),
        ("*", NO_VALIDATORS, NOT_MODIFIED),
        (f'"x", {ETAG}', META, NOT_MODIFIED),
        (f'junk, "x",{ETAG}', META, NOT_MODIFIED),
        ('W/"abc"', META, NOT_MODIFIED),
        (ETAG, WEAK, NOT_MODIFIED),
        ('"x", W/"abc"', WEAK, NOT_MODIFIED),
        ('"other"', META, OK),
        ('"x", "y"', META, OK),
        ('"ABC"', META, OK),
        ("abc", META, OK),
        (ETAG, NO_VALIDATORS, OK),
        ('"x", *', META, OK),
        ("", META, OK),
    ],
    ids=[
        "same",
        "star",
        "star-without-validators",
        "in-a-list",
        "in-a-list-with-junk",
        "weak-tag",
        "weak-current",
        "weak-in-a-list",
        "other",
        "list-without-it",
        "case-differs",
        "unquoted",
        "no-current-etag",
        "star-in-a-list",
        "empty",
    ],
)
def test_if_none_match_is_a_304_on_a_weak_match(
    method: str, if_none_match: str, meta: ObjectMeta, expected: Plan
) -> None:
    assert planned({"If-None-Match": if_none_match}, method, meta) == expected


@METHODS
@pytest.mark.parametrize(
    ("if_modified_since", "meta", "expected"),
    [
        (LATER, META, NOT_MODIFIED),
        (LM, META, NOT_MODIFIED),
        (LM, replace(META, last_modified=LAST_MODIFIED.replace(microsecond=500_000)), NOT_MODIFIED),
        (EARLIER, META, OK),
        ("not a date", META, OK),
        (LATER, replace(META, last_modified=None), OK),
    ],
    ids=["later", "same", "same-second", "earlier", "garbage", "no-current-date"],
)
def test_if_modified_since_is_a_304_when_unchanged_since_the_date(
    method: str, if_modified_since: str, meta: ObjectMeta, expected: Plan
) -> None:
    assert planned({"If-Modified-Since": if_modified_since}, method, meta) == expected


# --- If-Match and If-Unmodified-Since: 412 ----------------------------------------------------


@METHODS
@pytest.mark.parametrize(
    ("if_match", "meta", "expected"),
    [
        (ETAG, META, OK),
        ("*", META, OK),
        ("*", NO_VALIDATORS, OK),
        (f'"x", {ETAG}', META, OK),
        ('"other"', META, PRECONDITION_FAILED),
        ('W/"abc"', META, PRECONDITION_FAILED),
        (ETAG, WEAK, PRECONDITION_FAILED),
        (ETAG, NO_VALIDATORS, PRECONDITION_FAILED),
        ("", META, PRECONDITION_FAILED),
    ],
    ids=[
        "same",
        "star",
        "star-without-validators",
        "in-a-list",
        "other",
        "weak-tag",
        "weak-current",
        "no-current-etag",
        "empty",
    ],
)
def test_if_match_is_a_412_without_a_strong_match(
    method: str, if_match: str, meta: ObjectMeta, expected: Plan
) -> None:
    assert planned({"If-Match": if_match}, method, meta) == expected


@METHODS
@pytest.mark.parametrize(
    ("if_unmodified_since", "meta", "expected"),
    [
        (EARLIER, META, PRECONDITION_FAILED),
        (LM, META, OK),
        (LATER, META, OK),
        ("not a date", META, OK),
        (EARLIER, replace(META, last_modified=None), OK),
    ],
    ids=["earlier", "same", "later", "garbage", "no-current-date"],
)
def test_if_unmodified_since_is_a_412_when_modified_after_the_date(
    method: str, if_unmodified_since: str, meta: ObjectMeta, expected: Plan
) -> None:
    assert planned({"If-Unmodified-Since": if_unmodified_since}, method, meta) == expected


# --- RFC 9110 §13.2.2: the order of evaluation ------------------------------------------------


@METHODS
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # step 1 If-Match replaces step 2 If-Unmodified-Since
        ({"If-Match": ETAG, "If-Unmodified-Since": EARLIER}, OK),
        ({"If-Match": '"other"', "If-Unmodified-Since": LATER}, PRECONDITION_FAILED),
        # step 3 If-None-Match replaces step 4 If-Modified-Since
        ({"If-None-Match": '"other"', "If-Modified-Since": LATER}, OK),
        ({"If-None-Match": ETAG, "If-Modified-Since": EARLIER}, NOT_MODIFIED),
        # steps 1 and 2 come before step 3
        ({"If-Match": '"other"', "If-None-Match": ETAG}, PRECONDITION_FAILED),
        ({"If-Unmodified-Since": EARLIER, "If-None-Match": ETAG}, PRECONDITION_FAILED),
        ({"If-Unmodified-Since": EARLIER, "If-Modified-Since": LATER}, PRECONDITION_FAILED),
        ({"If-Match": ETAG, "If-None-Match": ETAG}, NOT_MODIFIED),
        ({"If-Unmodified-Since": LATER, "If-None-Match": "*"}, NOT_MODIFIED),
        # step 5: preconditions come before Range and If-Range
        ({"If-None-Match": ETAG, "Range": "bytes=0-4"}, NOT_MODIFIED),
        ({"If-Modified-Since": LATER, "Range": "bytes=0-4", "If-Range": ETAG}, NOT_MODIFIED),
        ({"If-Match": '"other"', "Range": "bytes=0-4"}, PRECONDITION_FAILED),
        ({"If-Match": '"other"', "Range": f"bytes={SIZE}-"}, PRECONDITION_FAILED),
        ({"If-Unmodified-Since": EARLIER, "Range": "bytes=0-4"}, PRECONDITION_FAILED),
        ({"If-None-Match": ETAG, "Range": f"bytes={SIZE}-"}, NOT_MODIFIED),
        # passing preconditions leave the range to be honoured
        ({"If-Match": ETAG, "Range": "bytes=0-4"}, partial(0, 4)),
        ({"If-None-Match": '"other"', "Range": "bytes=0-4", "If-Range": ETAG}, partial(0, 4)),
        ({"If-Modified-Since": EARLIER, "Range": "bytes=-5"}, partial(SIZE - 5, SIZE - 1)),
        ({"If-Unmodified-Since": LATER, "Range": f"bytes={SIZE}-"}, UNSATISFIABLE),
    ],
)
def test_preconditions_are_evaluated_in_rfc_9110_order(
    method: str, headers: dict[str, str], expected: Plan
) -> None:
    assert planned(headers, method) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"if-none-match": ETAG}, NOT_MODIFIED),
        ({"IF-MATCH": '"other"'}, PRECONDITION_FAILED),
        ({"range": "bytes=0-4", "if-range": ETAG}, partial(0, 4)),
    ],
)
def test_header_names_are_case_insensitive(headers: dict[str, str], expected: Plan) -> None:
    assert planned(headers) == expected


# --- what the pipeline asks storage for ---------------------------------------------------------


@pytest.mark.parametrize("name", CONDITIONAL)
def test_any_validator_header_makes_a_request_conditional(name: str) -> None:
    """Such a request reads metadata first: its answer may need no body at all."""
    assert is_conditional(CIMultiDict({name: ""}))


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-4"}, {"Accept": "*/*"}])
def test_a_plain_or_ranged_request_is_not_conditional(headers: dict[str, str]) -> None:
    assert not is_conditional(CIMultiDict(headers))


@pytest.mark.parametrize(
    ("header", "asked"),
    [("bytes=-100", "bytes=900-999"), ("bytes=900-", "bytes=900-999"), ("bytes=0-0", "bytes=0-0")],
)
def test_storage_is_asked_for_exactly_the_planned_bytes(header: str, asked: str) -> None:
    """The resolved range, not the client's spelling: what comes back is what was planned."""
    spec = storage_range(planned({"Range": header}))
    assert spec is not None
    assert spec.header() == asked


@pytest.mark.parametrize("plan_", [OK, NOT_MODIFIED])
def test_a_plan_without_a_range_asks_storage_for_the_whole_object(plan_: Plan) -> None:
    assert storage_range(plan_) is None


# --- the headers of each plan -------------------------------------------------------------------

OBJECT_HEADERS = {
    "Content-Type": "text/plain",
    "Content-Length": str(SIZE),
    "Accept-Ranges": "bytes",
    "Cache-Control": CACHE_CONTROL,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "sandbox",
    "ETag": ETAG,
    "Last-Modified": LM,
}


def headers_for(
    plan_: Plan,
    meta: ObjectMeta = META,
    granted: Mapping[str, str] | None = None,
    *,
    inline_active: bool = False,
) -> dict[str, str]:
    return object_headers(
        meta,
        plan_,
        cache_control=CACHE_CONTROL,
        granted=granted or {},
        inline_active=inline_active,
    )


def typed(content_type: str, disposition: str | None = None) -> ObjectMeta:
    return dataclasses.replace(META, content_type=content_type, content_disposition=disposition)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/HTML",
        "image/svg+xml",
        "application/xhtml+xml",
        "application/xml",
        "text/xml",
        "text/javascript",
        "application/javascript",
    ],
)
def test_an_active_type_is_served_as_an_attachment(content_type: str) -> None:
    headers = headers_for(OK, typed(content_type))

    assert headers["Content-Disposition"] == "attachment"
    assert headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize(
    "content_type", ["image/png", "video/mp4", "application/vnd.apple.mpegurl", "text/plain"]
)
def test_a_passive_type_keeps_its_disposition(content_type: str) -> None:
    assert "Content-Disposition" not in headers_for(OK, typed(content_type))


def test_a_stored_attachment_keeps_its_file_name() -> None:
    headers = headers_for(OK, typed("text/html", 'attachment; filename="a.html"'))
    assert headers["Content-Disposition"] == 'attachment; filename="a.html"'


def test_a_signed_disposition_or_the_setting_lets_an_active_type_inline() -> None:
    signed = headers_for(OK, typed("text/html"), {"Content-Disposition": "inline"})
    allowed = headers_for(OK, typed("image/svg+xml"), inline_active=True)

    assert signed["Content-Disposition"] == "inline"
    assert "Content-Disposition" not in allowed
    assert signed["Content-Security-Policy"] == allowed["Content-Security-Policy"] == "sandbox"


def test_a_signed_content_type_is_judged_as_served() -> None:
    headers = headers_for(OK, typed("image/png"), {"Content-Type": "text/html"})
    assert headers["Content-Disposition"] == "attachment"


def test_a_pdf_is_not_sandboxed() -> None:
    assert "Content-Security-Policy" not in headers_for(OK, typed("application/pdf"))


def test_a_200_carries_the_objects_headers_and_nothing_else() -> None:
    assert headers_for(OK) == OBJECT_HEADERS


def test_stored_entity_headers_are_passed_on() -> None:
    headers = headers_for(OK, DESCRIBED)
    assert headers == {
        **OBJECT_HEADERS,
        "Content-Encoding": "gzip",
        "Content-Disposition": 'inline; filename="a.txt"',
        "Content-Language": "de",
    }


def test_validators_storage_does_not_have_are_not_invented() -> None:
    headers = headers_for(OK, NO_VALIDATORS)
    assert "ETag" not in headers
    assert "Last-Modified" not in headers
    assert "Content-Range" not in headers


@pytest.mark.parametrize(
    ("header", "content_range", "length"),
    [
        ("bytes=10-19", "bytes 10-19/1000", "10"),
        ("bytes=-1", "bytes 999-999/1000", "1"),
        ("bytes=0-", "bytes 0-999/1000", "1000"),
    ],
)
def test_a_206_carries_its_content_range_and_length(
    header: str, content_range: str, length: str
) -> None:
    headers = headers_for(planned({"Range": header}))
    assert headers == {**OBJECT_HEADERS, "Content-Range": content_range, "Content-Length": length}


@pytest.mark.parametrize(
    ("meta", "granted", "kept"),
    [
        (META, {}, {"ETag", "Last-Modified", "Cache-Control"}),
        (DESCRIBED, {"Set-Cookie": "EdgeToken=x"}, NOT_MODIFIED_KEEPS),
        (
            META,
            {"Content-Type": "video/mp4", "Content-Disposition": "attachment"},
            {"ETag", "Last-Modified", "Cache-Control"},
        ),
        (NO_VALIDATORS, {}, {"Cache-Control"}),
    ],
    ids=["plain", "with-a-cookie", "with-overrides", "no-validators"],
)
def test_a_304_keeps_only_validators_cache_control_and_the_cookie(
    meta: ObjectMeta, granted: dict[str, str], kept: set[str]
) -> None:
    headers = headers_for(NOT_MODIFIED, meta, granted)
    assert set(headers) == kept
    assert headers["Cache-Control"] == CACHE_CONTROL
    if "Set-Cookie" in kept:
        assert headers["Set-Cookie"] == "EdgeToken=x"


@pytest.mark.parametrize("plan_", [OK, partial(0, 4)], ids=["200", "206"])
def test_granted_headers_win_over_the_stored_ones(plan_: Plan) -> None:
    """A token's signed overrides name the download whatever storage says; a cookie is added."""
    granted = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="x.bin"',
        "Set-Cookie": "EdgeToken=x; Path=/hls/",
    }
    headers = headers_for(plan_, DESCRIBED, granted)
    assert {name: headers[name] for name in granted} == granted
    assert headers["Content-Length"] == ("5" if plan_.range else str(SIZE))


# --- properties -----------------------------------------------------------------------------

sizes = st.integers(min_value=0, max_value=2**40)
metas = st.builds(
    ObjectMeta,
    size=sizes,
    etag=st.sampled_from([None, ETAG, 'W/"abc"', '"a,b"']),
    last_modified=st.sampled_from(
        [None, LAST_MODIFIED, LAST_MODIFIED.replace(microsecond=999_999)]
    ),
    content_type=st.just("application/octet-stream"),
)
numbers = st.integers(min_value=0, max_value=2**41).map(str)
range_headers = st.one_of(
    st.text(max_size=30),
    st.builds(lambda a, b: f"bytes={a}-{b}", numbers, numbers),
    st.builds(lambda a: f"bytes={a}-", numbers),
    st.builds(lambda a: f"bytes=-{a}", numbers),
)
validator_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["*", ETAG, 'W/"abc"', '"other"', '"a,b"', LM, EARLIER, LATER]),
)
request_headers = st.fixed_dictionaries(
    {},
    optional={
        "Range": range_headers,
        **{name: validator_values for name in CONDITIONAL},
    },
)
STATUSES = {200, 206, 304, 412, 416}


@given(method=st.sampled_from(["GET", "HEAD"]), headers=request_headers, meta=metas)
def test_plan_never_raises_and_only_a_206_has_a_range(
    method: str, headers: dict[str, str], meta: ObjectMeta
) -> None:
    """Client header text can only choose among the five answers; it cannot break planning."""
    result = planned(headers, method, meta)
    assert result.status in STATUSES
    assert (result.range is not None) == (result.status == 206)


@given(headers=request_headers, meta=metas)
def test_a_head_is_planned_as_the_get_would_be(headers: dict[str, str], meta: ObjectMeta) -> None:
    """HEAD describes exactly the response a GET would have had (RFC 9110 §9.3.2)."""
    assert planned(headers, "HEAD", meta) == planned(headers, "GET", meta)


@given(header=range_headers, meta=metas)
def test_a_206_lies_within_the_object_and_asks_storage_for_exactly_it(
    header: str, meta: ObjectMeta
) -> None:
    result = planned({"Range": header}, meta=meta)
    if result.status != 206:
        return
    byte_range = result.range
    assert byte_range is not None
    assert 0 <= byte_range.start <= byte_range.end < meta.size
    assert byte_range.size == meta.size
    spec = storage_range(result)
    assert spec is not None
    assert spec.resolve(meta.size) == byte_range
    headers = headers_for(result, meta)
    assert headers["Content-Length"] == str(byte_range.length)
    assert headers["Content-Range"] == byte_range.content_range()


@given(header=range_headers, meta=metas)
def test_without_preconditions_a_range_is_a_206_exactly_when_it_resolves(
    header: str, meta: ObjectMeta
) -> None:
    """200 when the Range is not honoured, 416 when it cannot be satisfied, else 206."""
    spec = parse_range(header)
    resolved = None if spec is None else spec.resolve(meta.size)
    expected = OK if spec is None else UNSATISFIABLE if resolved is None else Plan(206, resolved)
    assert planned({"Range": header}, meta=meta) == expected


@given(
    meta=metas,
    granted=st.dictionaries(
        st.sampled_from(["Content-Type", "Content-Disposition", "Set-Cookie"]), st.text()
    ),
)
def test_a_304_never_carries_more_than_it_may(meta: ObjectMeta, granted: dict[str, str]) -> None:
    assert set(headers_for(NOT_MODIFIED, meta, granted)) <= NOT_MODIFIED_KEEPS
