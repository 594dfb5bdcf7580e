"""Specification of Range parsing and resolution (RFC 9110 §14)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.http.ranges import (
    MAX_POSITION,
    ByteRange,
    RangeSpec,
    parse_range,
    unsatisfiable_content_range,
)

MAX_INT = 10**40 - 1  # the longest accepted number: 40 digits

positions = st.integers(min_value=0, max_value=MAX_INT)
sizes = st.integers(min_value=0, max_value=2**63)


@st.composite
def specs(draw: st.DrawFn) -> RangeSpec:
    kind = draw(st.sampled_from(["closed", "open", "suffix"]))
    if kind == "suffix":
        return RangeSpec(first=None, last=None, suffix=draw(positions))
    first = draw(positions)
    last = draw(st.integers(min_value=first, max_value=MAX_INT)) if kind == "closed" else None
    return RangeSpec(first=first, last=last, suffix=None)


def closed(first: int, last: int) -> RangeSpec:
    return RangeSpec(first=first, last=last, suffix=None)


def open_ended(first: int) -> RangeSpec:
    return RangeSpec(first=first, last=None, suffix=None)


def suffix(length: int) -> RangeSpec:
    return RangeSpec(first=None, last=None, suffix=length)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", closed(0, 99)),
        ("bytes=5-5", closed(5, 5)),
        ("bytes=0-", open_ended(0)),
        ("bytes=100-", open_ended(100)),
        ("bytes=-1", suffix(1)),
        ("bytes=-0", suffix(0)),
        ("bytes=-500", suffix(500)),
        ("Bytes=0-1", closed(0, 1)),
        ("BYTES=0-1", closed(0, 1)),
        ("bytes=007-010", closed(7, 10)),
        ("bytes= 0-1", closed(0, 1)),
        ("bytes=\t0-1\t", closed(0, 1)),
        (" bytes=0-1 ", closed(0, 1)),
        ("bytes=0-1,", closed(0, 1)),
        ("bytes=, 0-1 ,,", closed(0, 1)),
        (f"bytes=0-{MAX_INT}", closed(0, MAX_INT)),
        (f"bytes=-{MAX_INT}", suffix(MAX_INT)),
    ],
)
def test_valid_single_range_is_parsed(header: str, expected: RangeSpec) -> None:
    """A single syntactically valid bytes range-spec parses to the spec it denotes."""
    assert parse_range(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param("bytes=", id="no-range-spec"),
        pytest.param("bytes=,", id="only-empty-elements"),
        pytest.param("bytes", id="no-equals"),
        pytest.param("0-99", id="no-unit"),
        pytest.param("items=0-99", id="other-unit"),
        pytest.param("bytes =0-99", id="space-before-equals"),
        pytest.param("bytes=0-99,200-299", id="multi-range"),
        pytest.param("bytes=0-0,-1", id="multi-range-with-suffix"),
        pytest.param("bytes=0-1, 0-1", id="multi-range-duplicate"),
        pytest.param("bytes=10-5", id="first-after-last"),
        pytest.param("bytes=-", id="no-numbers"),
        pytest.param("bytes=--5", id="double-dash"),
        pytest.param("bytes=+5-10", id="plus-sign"),
        pytest.param("bytes=-5-10", id="negative-first"),
        pytest.param("bytes=5--10", id="negative-last"),
        pytest.param("bytes=1 0-20", id="space-in-first"),
        pytest.param("bytes=10-2 0", id="space-in-last"),
        pytest.param("bytes=10 -20", id="space-before-dash"),
        pytest.param("bytes=10- 20", id="space-after-dash"),
        pytest.param("bytes=0x10-20", id="hex"),
        pytest.param("bytes=1.5-20", id="decimal"),
        pytest.param("bytes=\u0661-\u0662", id="non-ascii-digits"),
        pytest.param("bytes=0-1;q=1", id="trailing-junk"),
        pytest.param("bytes=0-1\n", id="trailing-newline"),
        pytest.param(f"bytes=0-{'9' * 41}", id="forty-one-digit-last"),
        pytest.param(f"bytes={'9' * 41}-", id="forty-one-digit-first"),
        pytest.param(f"bytes=-{'9' * 41}", id="forty-one-digit-suffix"),
    ],
)
def test_anything_but_one_valid_bytes_range_is_ignored(header: str | None) -> None:
    """Absent, foreign-unit, malformed and multi-range headers all mean "serve the whole body"."""
    assert parse_range(header) is None


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-99", 1000, (0, 99)),
        ("bytes=0-0", 1000, (0, 0)),
        ("bytes=999-999", 1000, (999, 999)),
        ("bytes=0-", 1000, (0, 999)),
        ("bytes=500-", 1000, (500, 999)),
        ("bytes=999-", 1000, (999, 999)),
        ("bytes=900-2000", 1000, (900, 999)),
        ("bytes=0-999", 1000, (0, 999)),
        ("bytes=0-1000", 1000, (0, 999)),
        ("bytes=-1", 1000, (999, 999)),
        ("bytes=-100", 1000, (900, 999)),
        ("bytes=-1000", 1000, (0, 999)),
        ("bytes=-5000", 1000, (0, 999)),
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=-1", 1, (0, 0)),
        (f"bytes=0-{MAX_INT}", 10, (0, 9)),
    ],
)
def test_satisfiable_range_resolves_to_inclusive_bounds(
    header: str, size: int, expected: tuple[int, int]
) -> None:
    """Open ends and oversized last-pos or suffix clamp to the last byte of the object."""
    spec = parse_range(header)
    assert spec is not None
    assert spec.resolve(size) == ByteRange(*expected, size=size)


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=5000-6000", 1000),
        ("bytes=-0", 1000),
        ("bytes=-0", 0),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-1", 0),
        ("bytes=1-1", 1),
    ],
)
def test_unsatisfiable_range_resolves_to_none(header: str, size: int) -> None:
    """A first-pos at or past the end, a zero-length suffix, or an empty object cannot be served."""
    spec = parse_range(header)
    assert spec is not None
    assert spec.resolve(size) is None


def test_resolve_rejects_negative_size() -> None:
    """A negative size is a caller bug, not an unsatisfiable range."""
    with pytest.raises(ValueError, match="negative size"):
        closed(0, 1).resolve(-1)


@pytest.mark.parametrize(
    ("byte_range", "content_range", "length"),
    [
        (ByteRange(0, 99, 1000), "bytes 0-99/1000", 100),
        (ByteRange(0, 0, 1), "bytes 0-0/1", 1),
        (ByteRange(999, 999, 1000), "bytes 999-999/1000", 1),
        (ByteRange(0, 999, 1000), "bytes 0-999/1000", 1000),
    ],
)
def test_byte_range_reports_content_range_and_length(
    byte_range: ByteRange, content_range: str, length: int
) -> None:
    """Content-Range and Content-Length of a 206 follow from the inclusive bounds."""
    assert byte_range.content_range() == content_range
    assert byte_range.length == length


@pytest.mark.parametrize(
    ("start", "end", "size"),
    [(-1, 0, 10), (5, 4, 10), (0, 10, 10), (0, 0, 0)],
)
def test_byte_range_refuses_bounds_outside_the_object(start: int, end: int, size: int) -> None:
    """A ByteRange is satisfiable by construction, so handlers can trust its bounds."""
    with pytest.raises(ValueError, match="invalid byte range"):
        ByteRange(start, end, size)


@pytest.mark.parametrize(
    ("first", "last", "suffix_length"),
    [
        (None, None, None),
        (1, None, 5),
        (None, 5, None),
        (None, 5, 5),
        (5, 4, None),
        (-1, None, None),
        (None, None, -1),
    ],
)
def test_range_spec_refuses_impossible_combinations(
    first: int | None, last: int | None, suffix_length: int | None
) -> None:
    """A RangeSpec is exactly one of "a-b", "a-" or "-n" with non-negative numbers."""
    with pytest.raises(ValueError, match="invalid range spec"):
        RangeSpec(first=first, last=last, suffix=suffix_length)


@pytest.mark.parametrize(
    ("spec", "header"),
    [
        (closed(0, 99), "bytes=0-99"),
        (open_ended(0), "bytes=0-"),
        (open_ended(42), "bytes=42-"),
        (suffix(0), "bytes=-0"),
        (suffix(500), "bytes=-500"),
    ],
)
def test_header_is_canonical(spec: RangeSpec, header: str) -> None:
    """The forwarded header is the canonical serialisation of the validated spec."""
    assert spec.header() == header


def test_header_drops_leading_zeros_and_whitespace() -> None:
    """What the origin sees is normalised, not the client's spelling."""
    spec = parse_range("BYTES= 007-010 ,")
    assert spec is not None
    assert spec.header() == "bytes=7-10"


@pytest.mark.parametrize(("size", "expected"), [(0, "bytes */0"), (1000, "bytes */1000")])
def test_unsatisfiable_content_range_names_the_size(size: int, expected: str) -> None:
    """A 416 tells the client the current size so it can retry with a sensible range."""
    assert unsatisfiable_content_range(size) == expected


@given(spec=specs())
def test_header_round_trips_through_parse(spec: RangeSpec) -> None:
    """Any spec's canonical header parses back to the same spec, for positions an object can
    have; past those, back to a spec that resolves the same for every size."""
    parsed = parse_range(spec.header())
    positions = [n for n in (spec.first, spec.last, spec.suffix) if n is not None]
    if all(n <= MAX_POSITION for n in positions):
        assert parsed == spec
    else:
        assert parsed is not None
        for size in (0, 1, 1000, MAX_POSITION):
            assert parsed.resolve(size) == spec.resolve(size)


@given(spec=specs(), size=sizes)
def test_resolved_range_lies_within_the_object(spec: RangeSpec, size: int) -> None:
    """Whatever is asked, a resolved range never reaches outside [0, size - 1]."""
    resolved = spec.resolve(size)
    if resolved is not None:
        assert 0 <= resolved.start <= resolved.end <= size - 1
        assert resolved.size == size
        assert 1 <= resolved.length <= size


@given(first=positions, last=positions, size=sizes)
def test_closed_range_is_satisfiable_exactly_when_first_is_inside(
    first: int, last: int, size: int
) -> None:
    """For "a-b", a 206 is due iff a < size, and the body is a..min(b, size - 1)."""
    spec = parse_range(f"bytes={first}-{last}")
    if first > last:
        assert spec is None
        return
    assert spec is not None
    resolved = spec.resolve(size)
    if first < size:
        assert resolved == ByteRange(first, min(last, size - 1), size)
    else:
        assert resolved is None


@given(length=positions, size=sizes)
def test_suffix_range_serves_the_last_bytes(length: int, size: int) -> None:
    """For "-n", a 206 is due iff n > 0 and size > 0, and the body is the last min(n, size)."""
    spec = parse_range(f"bytes=-{length}")
    assert spec is not None
    resolved = spec.resolve(size)
    if length > 0 and size > 0:
        assert resolved is not None
        assert resolved.end == size - 1
        assert resolved.length == min(length, size)
    else:
        assert resolved is None


@given(first=specs(), second=specs())
def test_any_multi_range_request_is_ignored(first: RangeSpec, second: RangeSpec) -> None:
    """Two range-specs mean a full 200 response, as S3 answers."""
    header = first.header() + "," + second.header().removeprefix("bytes=")
    assert parse_range(header) is None


@given(header=st.text())
def test_parse_range_never_raises_on_arbitrary_text(header: str) -> None:
    """Client input can only produce a spec or None."""
    result = parse_range(header)
    assert result is None or isinstance(result, RangeSpec)


@given(header=st.from_regex(r"\A[Bb][Yy][Tt][Ee][Ss]=[ \t,0-9-]{0,30}\Z"))
def test_parse_range_never_raises_on_near_valid_text(header: str) -> None:
    """Text made of the grammar's own characters still yields a spec or None, never an error."""
    result = parse_range(header)
    if result is not None:
        assert parse_range(result.header()) == result


BEYOND = 2**63  # past the end of any object: storage parses positions as int64


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (f"bytes=0-{BEYOND}", 1000, (0, 999)),
        ("bytes=0-9999999999999999999", 1000, (0, 999)),
        ("bytes=0-99999999999999999999", 1000, (0, 999)),
        ("bytes=00000000000000000001-", 1000, (1, 999)),
        (f"bytes=-{BEYOND}", 1000, (0, 999)),
        (f"bytes={BEYOND}-", 1000, None),
        ("bytes=99999999999999999999-", 1000, None),
    ],
)
def test_positions_of_any_size_resolve_like_small_ones(
    header: str, size: int, expected: tuple[int, int] | None
) -> None:
    spec = parse_range(header)
    assert spec is not None
    resolved = spec.resolve(size)
    assert (None if resolved is None else (resolved.start, resolved.end)) == expected


@pytest.mark.parametrize(
    ("header", "sent"),
    [
        (f"bytes=0-{BEYOND}", "bytes=0-"),
        (f"bytes=5-{2**63 - 1}", f"bytes=5-{2**63 - 1}"),
        (f"bytes=-{BEYOND}", "bytes=0-"),
        (f"bytes=-{2**63 - 1}", f"bytes=-{2**63 - 1}"),
    ],
)
def test_storage_is_never_sent_a_position_past_any_object(header: str, sent: str) -> None:
    spec = parse_range(header)
    assert spec is not None
    assert spec.header() == sent


def test_only_a_first_position_past_any_object_needs_the_size_first() -> None:
    assert parse_range(f"bytes={BEYOND}-").beyond_any_object  # type: ignore[union-attr]
    assert not parse_range(f"bytes={BEYOND - 1}-").beyond_any_object  # type: ignore[union-attr]
    assert not parse_range(f"bytes=-{BEYOND}").beyond_any_object  # type: ignore[union-attr]
