"""How long a cached object stays fresh (`gateway.cache.freshness.lifetime`): the object's own
`Cache-Control` and `Expires`, as stored with it, else the default TTL (RFC 9111 §4.2)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.freshness import lifetime
from gateway.http.conditionals import format_http_date
from gateway.storage import ObjectMeta

NOW = 1_790_000_000.0
TTL = 60.0


def meta(cache_control: str | None = None, expires: str | None = None) -> ObjectMeta:
    return ObjectMeta(
        size=1,
        etag='"v1"',
        last_modified=None,
        content_type="text/plain",
        cache_control=cache_control,
        expires=expires,
    )


def http_date(offset: float) -> str:
    return format_http_date(datetime.fromtimestamp(NOW + offset, UTC))


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        (None, TTL),
        ("", TTL),
        ("public", TTL),
        ("max-age=300", 300.0),
        ("max-age=0", 0.0),
        ("public, max-age=300", 300.0),
        ("private, max-age=300", 300.0),  # private addresses caches after the gateway
        ("MAX-AGE=300", 300.0),
        ('max-age="300"', 300.0),
        (" max-age = 300 ", 300.0),
        ("s-maxage=10, max-age=300", 10.0),  # a shared cache's own lifetime wins
        ("max-age=300, s-maxage=10", 10.0),
        ("no-cache", 0.0),  # stored, revalidated on every request
        ("no-cache, max-age=300", 0.0),
        ('no-cache="Set-Cookie"', 0.0),  # the qualified form, taken as unqualified
        ('no-cache="Set-Cookie, Authorization"', 0.0),
        ('private="X-A, max-age=5", max-age=300', 300.0),  # a quoted comma ends nothing
        ("max-age=" + "9" * 400, float(2**31)),  # RFC 9111 §1.2.2: at most 2^31
        ("max-age=soon", 0.0),  # an invalid lifetime: stale, revalidate every time
        ("max-age=-1", 0.0),
        ("no-store", None),  # never stored
        ("max-age=300, no-store", None),
        ("NO-STORE", None),
    ],
)
def test_the_objects_cache_control_decides_else_the_default_ttl(
    cache_control: str | None, expected: float | None
) -> None:
    assert lifetime(meta(cache_control), TTL, NOW) == expected


@pytest.mark.parametrize(
    ("expires", "expected"),
    [
        (http_date(120), 120.0),
        (http_date(-120), 0.0),  # already past: revalidate
        ("0", 0.0),  # not a date: taken as already expired (RFC 9111 §5.3)
        ("soon", 0.0),
    ],
)
def test_without_a_lifetime_in_cache_control_expires_decides(expires: str, expected: float) -> None:
    assert lifetime(meta(expires=expires), TTL, NOW) == expected


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [("max-age=5", 5.0), ("s-maxage=7", 7.0), ("no-store", None), ("no-cache", 0.0)],
)
def test_cache_control_wins_over_expires(cache_control: str, expected: float | None) -> None:
    assert lifetime(meta(cache_control, http_date(3600)), TTL, NOW) == expected


@given(cache_control=st.one_of(st.none(), st.text()), expires=st.one_of(st.none(), st.text()))
def test_any_stored_header_gives_a_lifetime_or_no_store_and_never_an_error(
    cache_control: str | None, expires: str | None
) -> None:
    fresh_for = lifetime(meta(cache_control, expires), TTL, NOW)
    assert fresh_for is None or fresh_for >= 0.0
