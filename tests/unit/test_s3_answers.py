"""How the S3 store reads storage's answers to a ranged GET: a scripted server plays storage,
so the answers can be ones no well-behaved S3 server would give."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import AioSession

from gateway.http.ranges import RangeSpec
from gateway.storage import OriginError
from gateway.storage.s3 import S3Store
from tests.polling import eventually

RANGE = RangeSpec(first=10, last=19, suffix=None)


class ScriptedStorage:
    """Plays storage: answers the first request on each connection with `reply`, then keeps
    the connection until the store closes it, counting the connections the store holds."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.held = 0

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.reply)
            await writer.drain()
            await reader.read()  # until the store closes its end
        finally:
            self.held -= 1
            writer.close()


StoreAnswering = Callable[[bytes], Awaitable[tuple[S3Store, ScriptedStorage]]]


@pytest.fixture
async def store_answering(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StoreAnswering]:
    """An S3Store whose storage answers every request with `reply`, and that storage."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-made-at-test-time")
    started: list[tuple[asyncio.Server, S3Store]] = []

    async def start(reply: bytes) -> tuple[S3Store, ScriptedStorage]:
        storage = ScriptedStorage(reply)
        server = await asyncio.start_server(storage.answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = S3Store(
            bucket="media",
            region="us-east-1",
            endpoint_url=f"http://127.0.0.1:{port}",
            connect_timeout=2,
            first_byte_timeout=2,
            idle_timeout=2,
            chunk_size=65536,
            pool_size=2,
        )
        await store.start()
        started.append((server, store))
        return store, storage

    yield start
    for server, store in started:
        await store.close()
        server.close()


def partial(content_range: str, body: bytes, length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    return b"HTTP/1.1 206 Partial Content\r\nContent-Range: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        content_range.encode(),
        declared,
        body,
    )


async def test_a_range_whose_length_matches_its_content_range_is_streamed(
    store_answering: StoreAnswering,
) -> None:
    store, _ = await store_answering(partial("bytes 10-19/100", b"0123456789"))
    body = await store.get("clip.mp4", RANGE)
    received = b"".join([chunk async for chunk in body.chunks()])
    await body.release()
    assert received == b"0123456789"
    assert body.meta.size == 100
    assert body.range is not None
    assert (body.range.start, body.range.length) == (10, 10)


@pytest.mark.parametrize(
    "reply",
    [
        partial("bytes 10-19/100", b"x" * 50),  # framing longer than the range
        partial("bytes 10-19/100", b"x" * 5),  # shorter
    ],
    ids=["longer", "shorter"],
)
async def test_a_range_whose_framing_disagrees_with_its_content_range_is_refused(
    store_answering: StoreAnswering, reply: bytes
) -> None:
    """The client would be promised one length and sent another: a 502, before any header."""
    store, storage = await store_answering(reply)
    with pytest.raises(OriginError, match="disagrees"):
        await store.get("clip.mp4", RANGE)
    await eventually(lambda: storage.held == 0)  # the store let go of the connection


async def test_a_head_answer_whose_length_is_no_ascii_number_is_an_origin_error(
    store_answering: StoreAnswering,
) -> None:
    """A HEAD's Content-Length is not framing, so only the metadata reads it: "²" passes
    `str.isdigit`, and must not reach `int`."""
    store, _ = await store_answering(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n")
    with pytest.raises(OriginError, match="no Content-Length"):
        await store.head("clip.mp4")


class RecordingStorage:
    """Answers every request, on any connection, with an empty 200; keeps each request head."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def credential(self, index: int) -> str:
        head = self.heads[index].decode()
        return head.partition("Credential=")[2].partition("/")[0]


async def heads_of_two_requests(
    credentials: AioRefreshableCredentials | None, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The access key ids two HEADs through a fresh S3Store were signed with; with
    `credentials`, those are what the session finds (else the environment's keys)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fixed-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fixed-secret-made-at-test-time")
    if credentials is not None:

        async def found(self: AioSession) -> AioRefreshableCredentials:
            return credentials

        monkeypatch.setattr(AioSession, "get_credentials", found)
    storage = RecordingStorage()
    server = await asyncio.start_server(storage.answer, "127.0.0.1", 0)
    store = S3Store(
        bucket="media",
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}",
        connect_timeout=2,
        first_byte_timeout=2,
        idle_timeout=2,
        chunk_size=65536,
        pool_size=2,
    )
    await store.start()
    try:
        await store.head("a")
        await store.head("b")
    finally:
        await store.close()
        server.close()
    return [storage.credential(0), storage.credential(1)]


async def test_fixed_credentials_sign_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await heads_of_two_requests(None, monkeypatch) == ["fixed-key-id", "fixed-key-id"]


async def test_refreshing_credentials_are_asked_again_for_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued = iter(range(1, 10))

    def next_keys() -> dict[str, str]:  # a role's keys, each about to expire
        expiry = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        n = next(issued)
        return {
            "access_key": f"role-key-{n}",
            "secret_key": "s",
            "token": "t",
            "expiry_time": expiry,
        }

    role = AioRefreshableCredentials.create_from_metadata(next_keys(), next_keys, "test-role")
    assert await heads_of_two_requests(role, monkeypatch) == ["role-key-2", "role-key-3"]
