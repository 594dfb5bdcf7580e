"""Specification of usage limits (MaxStreams, MaxUses, MaxServed, Rate) on one gateway with the
embedded store: the revocation store's SQLite file, real, through the real pipeline. Client
addresses come from X-Forwarded-For (loopback is a trusted proxy here), so one test can be two
viewers. The fleet (Redis, several gateways) is tests/integration/test_limits.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.limits import Ask
from gateway.limits.sqlite_store import SQLiteLimitStore
from tests.integration.harness import Keys, RunningGateway, gateway_settings, make_keys
from tests.integration.harness import running_gateway as start
from tests.polling import eventually_async

BODY = bytes(range(256)) * 4  # 1024 bytes
SIZE = len(BODY)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, Keys]]:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "film.mp4").write_bytes(BODY)
    (tmp_path / "keys").mkdir()
    keys = make_keys(tmp_path / "keys")
    settings = gateway_settings(
        f"file://{root}",
        keys.gateway_file,
        trusted_proxies="127.0.0.1/32",
        limit_stream_lease="0.5",
        keyring_watch_interval="0",
    )
    async with start(settings) as gw:
        yield gw, keys


async def fetch(
    gw: RunningGateway, link: str, client: str = "198.51.100.1", **headers: str
) -> tuple[int, bytes]:
    response, body = await gw.request(
        headers.pop("method", "GET"), link, {"X-Forwarded-For": client, **headers}
    )
    return response.status, body


def error(code: str) -> bytes:
    return b'{"error":"%s"}\n' % code.encode()


async def test_a_link_without_limits_never_touches_the_limit_store(
    site: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = site
    assert await fetch(gw, keys.sign("/film.mp4")) == (200, BODY)
    store = gw.services.limits.store  # type: ignore[union-attr]
    assert isinstance(store, SQLiteLimitStore)
    assert store._db is None


@pytest.mark.parametrize("uses", [1, 3])
async def test_max_uses_serves_exactly_that_many_downloads(
    site: tuple[RunningGateway, Keys], uses: int
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_uses=uses)
    for _ in range(uses):
        assert await fetch(gw, link) == (200, BODY)
    assert await fetch(gw, link) == (403, error("uses_exhausted"))
    assert gw.metric("gateway_requests_total", method="GET", status="403", reason="uses_exhausted")


async def test_max_uses_under_twenty_concurrent_attempts_lets_exactly_n_through(
    site: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_uses=3)
    answers = await asyncio.gather(*(fetch(gw, link, f"198.51.100.{i}") for i in range(20)))
    assert sorted(status for status, _ in answers) == [200] * 3 + [403] * 17


@pytest.mark.parametrize(
    ("headers", "counted"),
    [
        ({"Range": "bytes=0-99"}, True),  # a player's first request starts at byte 0
        ({"Range": "bytes=100-199"}, False),  # a seek within the same viewing
        ({"Range": "bytes=-10"}, False),  # a suffix (an MP4's index at the end)
        ({"method": "HEAD"}, False),  # no body
    ],
)
async def test_a_use_is_a_body_that_starts_at_byte_zero(
    site: tuple[RunningGateway, Keys], headers: dict[str, str], counted: bool
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_uses=1)
    status, _ = await fetch(gw, link, **headers)
    assert status in (200, 206)
    assert (await fetch(gw, link))[0] == (403 if counted else 200)


async def test_max_served_refuses_a_body_that_cannot_fit_and_serves_a_range_that_can(
    site: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_served=SIZE + 400)
    assert await fetch(gw, link) == (200, BODY)
    assert await fetch(gw, link) == (403, error("bytes_exhausted"))  # 1024 > 400 left
    assert await fetch(gw, link, Range="bytes=0-399") == (206, BODY[:400])  # exactly what is left
    assert await fetch(gw, link, Range="bytes=0-0") == (403, error("bytes_exhausted"))


async def test_max_streams_holds_a_slot_per_client_address_that_outlives_its_response(
    site: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = site
    link = keys.sign("/film.mp4", max_streams=1)
    viewer, other = "198.51.100.7", "203.0.113.9"
    assert await fetch(gw, link, viewer) == (200, BODY)
    assert await fetch(gw, link, viewer, Range="bytes=100-199") == (206, BODY[100:200])
    assert await fetch(gw, link, other) == (429, error("too_many_streams"))

    async def other_admitted() -> bool:
        return (await fetch(gw, link, other))[0] == 200

    await eventually_async(other_admitted)  # the viewer's lease (0.5 s) lapsed


@pytest.mark.parametrize(
    ("ask", "verdict"),
    [
        ({"max_streams": 1, "client": "b"}, "too_many_streams"),
        ({"max_streams": 1, "client": "a"}, "ok"),  # the same client: the same stream
        ({"max_streams": 2, "client": "b"}, "ok"),
        ({"max_uses": 1, "use": True}, "uses_exhausted"),
        ({"max_uses": 1, "use": False}, "ok"),
        ({"max_uses": 2, "use": True}, "ok"),
        ({"max_served": 100, "reserve": 1}, "bytes_exhausted"),
        ({"max_served": 101, "reserve": 1}, "ok"),
    ],
)
async def test_the_embedded_store_judges_each_limit_after_one_admitted_request(
    tmp_path: Path, ask: dict[str, Any], verdict: str
) -> None:
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    first = Ask("a", 1, 60, 1, True, 100, 100, time.time() + 60)
    assert await store.admit("t1", first) == "ok"
    defaults: dict[str, Any] = {
        "client": "a",
        "max_streams": 0,
        "lease": 60.0,
        "max_uses": 0,
        "use": False,
    }
    defaults |= {"max_served": 0, "reserve": 0, "expires": time.time() + 60}
    assert await store.admit("t1", Ask(**(defaults | ask))) == verdict
    await store.close()


async def test_a_refused_request_takes_nothing(tmp_path: Path) -> None:
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    expires = time.time() + 60
    assert await store.admit("t1", Ask("a", 1, 60, 0, False, 0, 0, expires)) == "ok"
    assert await store.admit("t1", Ask("b", 1, 60, 5, True, 10, 5, expires)) == "too_many_streams"
    usage = await store.usage("t1")
    assert (usage.uses, usage.served, list(usage.streams)) == (0, 0, ["a"])
    await store.close()


async def test_rate_books_each_chunk_after_the_last_on_one_schedule_per_link(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3", clock=lambda: now[0])
    expires = now[0] + 60
    waits = [await store.pace("t1", 1000, 500, expires) for _ in range(3)]
    assert waits == [0.0, 0.5, 1.0]  # 500 bytes at 1000 B/s: half a second each
    assert await store.pace("t2", 1000, 500, expires) == 0.0  # another link, its own schedule
    now[0] += 10  # idle time is not saved up as a burst
    assert await store.pace("t1", 1000, 500, expires) == 0.0
    await store.close()


async def test_reset_forgets_a_links_uses_bytes_and_streams(tmp_path: Path) -> None:
    store = SQLiteLimitStore(tmp_path / "limits.sqlite3")
    expires = time.time() + 60
    assert await store.admit("t1", Ask("a", 1, 60, 1, True, 10, 10, expires)) == "ok"
    await store.reset("t1")
    usage = await store.usage("t1")
    assert (usage.uses, usage.served, usage.streams) == (0, 0, {})
    await store.close()


@pytest.mark.parametrize(
    ("subject_streams", "other_viewer", "first_viewer"), [(True, 429, 200), (False, 200, 429)]
)
async def test_subject_streams_makes_max_streams_count_every_link_of_the_subject_together(
    site: tuple[RunningGateway, Keys], subject_streams: bool, other_viewer: int, first_viewer: int
) -> None:
    """Two links of one subject: with the flag the first viewer's lease is the subject's one
    slot (and lets them use the second link too); without, each link has its own slot."""
    gw, keys = site
    scope = {"sub": "household-7", "max_streams": 1, "subject_streams": subject_streams}
    first, second = (keys.sign("/film.mp4", **scope, expires_in=e) for e in (300, 301))
    assert await fetch(gw, first, "198.51.100.7") == (200, BODY)
    assert (await fetch(gw, second, "203.0.113.9"))[0] == other_viewer
    assert (await fetch(gw, second, "198.51.100.7"))[0] == first_viewer


async def test_subject_streams_of_another_subject_are_not_counted(
    site: tuple[RunningGateway, Keys],
) -> None:
    gw, keys = site
    a, b = (
        keys.sign("/film.mp4", sub=sub, max_streams=1, subject_streams=True)
        for sub in ("household-7", "household-8")
    )
    assert await fetch(gw, a, "198.51.100.7") == (200, BODY)
    assert await fetch(gw, b, "203.0.113.9") == (200, BODY)


async def test_a_use_taken_before_storage_is_given_back_when_storage_has_no_body(
    site: tuple[RunningGateway, Keys], tmp_path: Path
) -> None:
    gw, keys = site
    link = keys.sign("/later.mp4", max_uses=1)
    assert (await fetch(gw, link))[0] == 404
    (tmp_path / "objects" / "later.mp4").write_bytes(BODY)
    assert await fetch(gw, link) == (200, BODY)
    assert await fetch(gw, link) == (403, error("uses_exhausted"))
