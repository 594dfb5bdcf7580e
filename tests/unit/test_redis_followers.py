"""The Redis followers (revocations, cache purges) stop when cancelled, whatever redis-py makes of
the cancellation. A cancel that lands mid-command can come out of redis-py as a ConnectionError
(it drops the connection on the way out) or not at all (the command's reply): a follower that
went on would never stop, and neither would the shutdown that awaits it. Seen against a real
Valkey in about one in twenty cancels; here a fake client does either every time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.cache.purges import FleetPurges, Purges
from gateway.revocation.redis_store import RedisStore
from gateway.revocation.view import RevocationView

URL = "redis://127.0.0.1:1/0"  # never connected to: the client is replaced


def raises_connection_error() -> Any:
    raise RedisConnectionError("Connection closed by server.")


def answers_nothing() -> Any:
    return None  # XREAD's reply when BLOCK ran out


class FakeRedis:
    """Answers a resync at once; an XREAD waits until cancelled, then does what redis-py may.
    A follower that reads on after that gets an AssertionError, which ends it (a clear failure
    rather than a test that hangs)."""

    def __init__(self, on_cancel: Callable[[], Any]) -> None:
        self.on_cancel = on_cancel
        self.reading = asyncio.Event()

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        if self.reading.is_set():
            raise AssertionError("the follower read on after it was cancelled")
        self.reading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return self.on_cancel()
        raise AssertionError("unreachable")

    async def xrevrange(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    async def hgetall(self, *args: Any) -> dict[bytes, bytes]:
        return {}

    def pipeline(self, **kwargs: Any) -> FakePipeline:
        return FakePipeline()

    async def aclose(self) -> None:
        pass


class FakePipeline:
    """`FleetPurges._resume`'s pipeline: a server, and no stream yet."""

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def info(self, section: str) -> None:
        pass

    def xinfo_stream(self, stream: str) -> None:
        pass

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return [{"run_id": "fake"}, ResponseError("no such key")]


def revocations(client: FakeRedis) -> Awaitable[None]:
    store = RedisStore(URL)
    store._client = client  # type: ignore[assignment]
    return store.follow(RevocationView())


def purges(client: FakeRedis) -> Awaitable[None]:
    fleet = FleetPurges(URL)
    fleet._client = client  # type: ignore[assignment]
    return fleet.follow(Purges(None, "", fleet))


@pytest.mark.parametrize("follower", [revocations, purges])
@pytest.mark.parametrize("on_cancel", [raises_connection_error, answers_nothing])
async def test_a_cancelled_follower_stops(
    follower: Callable[[FakeRedis], Awaitable[None]], on_cancel: Callable[[], Any]
) -> None:
    client = FakeRedis(on_cancel)
    task = asyncio.ensure_future(follower(client))
    await client.reading.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled(), task.exception()
