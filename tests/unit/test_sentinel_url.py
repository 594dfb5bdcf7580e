"""What a `redis+sentinel://` store URL names, and what it refuses (without quoting it)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.revocation.redis_store import SentinelTarget, parse_sentinel_url
from gateway.settings import load


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://h1:26379,h2:26380,h3:26381/mymaster/0",
            SentinelTarget((("h1", 26379), ("h2", 26380), ("h3", 26381)), "mymaster", 0, {}, {}),
        ),
        (
            "redis+sentinel://h1,h2/mymaster",
            SentinelTarget((("h1", 26379), ("h2", 26379)), "mymaster", 0, {}, {}),
        ),
        (
            "REDIS+SENTINEL://[::1]:26380,10.0.0.2/cache/3",
            SentinelTarget((("::1", 26380), ("10.0.0.2", 26379)), "cache", 3, {}, {}),
        ),
        (
            "redis+sentinel://:p%40ss@h1/m/1",
            SentinelTarget((("h1", 26379),), "m", 1, {"password": "p@ss"}, {}),
        ),
        (
            "redis+sentinel://app:pw@h1/m",
            SentinelTarget((("h1", 26379),), "m", 0, {"username": "app", "password": "pw"}, {}),
        ),
        (
            "redis+sentinel://h1/m?password=pw&sentinel_password=spw&sentinel_username=s",
            SentinelTarget(
                (("h1", 26379),), "m", 0, {"password": "pw"}, {"password": "spw", "username": "s"}
            ),
        ),
        (
            "redis+sentinel://:from-userinfo@h1/m?password=from-query",
            SentinelTarget((("h1", 26379),), "m", 0, {"password": "from-userinfo"}, {}),
        ),
    ],
    ids=[
        "three",
        "default-ports",
        "ipv6-and-db",
        "encoded-password",
        "user",
        "query",
        "userinfo-wins",
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_service_and_the_credentials(
    url: str, expected: SentinelTarget
) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h1:26379", "/<service name>"),
        ("redis+sentinel://h1:26379/", "/<service name>"),
        ("redis+sentinel://h1/m/0/x", "/<service name>"),
        ("redis+sentinel://h1/m/zero", "database must be a number"),
        ("redis+sentinel://h1:0/m", "port must be a number"),
        ("redis+sentinel://h1:99999/m", "port must be a number"),
        ("redis+sentinel://h1:x/m", "port must be a number"),
        ("redis+sentinel://h1,,h2/m", "needs a host"),
        ("redis+sentinel://:secret-pw@/m", "needs a host"),
        ("redis+sentinel://[::1]x/m", "[IPv6]:port"),
        ("redis+sentinel://h1/m?db=2", "unknown parameter 'db'"),
        ("redis://h1/m", "not a redis+sentinel"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)) as refused:
        parse_sentinel_url(url)
    assert "secret-pw" not in str(refused.value)


@given(st.text())
def test_any_text_after_the_scheme_parses_or_is_refused_with_a_value_error(rest: str) -> None:
    try:
        target = parse_sentinel_url("redis+sentinel://" + rest)
    except ValueError:
        return
    assert target.sentinels
    assert target.service
    assert all(0 < port < 65536 for _, port in target.sentinels)


def test_the_settings_take_a_sentinel_url_as_the_fleets_store() -> None:
    url = "redis+sentinel://h1:26379,h2:26379,h3:26379/mymaster/0"
    settings = load(
        environ={
            "GATEWAY_ORIGIN": "file:///srv",
            "GATEWAY_KEYRING": "/k.json",
            "GATEWAY_REDIS_URL": url,
        }
    )
    assert settings.revocation.store_url == url
