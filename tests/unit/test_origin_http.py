"""The storage data-path client: keep-alive, streaming bodies, and every way an answer can be
unusable. A scripted asyncio server plays storage."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.storage.origin_http import (
    ConnectionPool,
    OriginProtocolError,
    OriginResponse,
    _Connection,
)


class Storage:
    """Answers each request with the next scripted reply; counts connections and requests."""

    def __init__(self, replies: Callable[[int], bytes | None]) -> None:
        self.replies = replies
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                reply = self.replies(len(self.requests))
                if reply is None:  # hang up without answering
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


Start = Callable[[Callable[[int], bytes | None]], Storage]


@pytest.fixture
async def storage() -> AsyncIterator[Start]:
    started: list[Storage] = []

    def start(replies: Callable[[int], bytes | None]) -> Storage:
        fake = Storage(replies)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        if fake.server is not None:
            fake.server.close()


async def serve(fake: Storage) -> ConnectionPool:
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    return ConnectionPool("127.0.0.1", fake.port, tls=False, size=4, connect_timeout=2)


def ok(body: bytes, extra: str = "") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra.encode(),
        body,
    )


async def read_all(pool: ConnectionPool, method: str = "GET") -> tuple[int, bytes]:
    response = await pool.request(method, "/bucket/key", {"Host": "storage"})
    body = b""
    while chunk := await response.read_chunk(3):
        body += chunk
    response.release()
    return response.status, body


async def test_a_connection_is_reused_once_a_body_was_read_whole(storage: Start) -> None:
    fake = storage(lambda n: ok(b"object %d" % n))
    pool = await serve(fake)

    assert await read_all(pool) == (200, b"object 1")
    assert await read_all(pool) == (200, b"object 2")

    assert fake.connections == 1
    await pool.close()


async def read_socket_lent(pool: ConnectionPool, size: int) -> bytes:
    """Read a body the way the zero-copy relay does: what was received, then the socket."""
    response = await pool.request("GET", "/k", {})
    handed = response.lend_socket()
    assert handed is not None
    received, fd, remaining = handed
    assert sum(map(len, received)) + remaining == size
    rest = bytearray()
    loop = asyncio.get_running_loop()
    with socket.socket(fileno=os.dup(fd)) as sock:
        while len(rest) < remaining:
            rest += await loop.sock_recv(sock, remaining - len(rest))
    response.socket_read_to_end()
    response.release()
    return b"".join(received) + bytes(rest)


async def test_a_body_read_from_the_lent_socket_leaves_the_connection_reusable(
    storage: Start,
) -> None:
    bodies = {n: os.urandom(300_000 + n) for n in (1, 2, 3)}
    fake = storage(lambda n: ok(bodies[n]))
    pool = await serve(fake)

    assert await read_socket_lent(pool, len(bodies[1])) == bodies[1]
    assert await read_all(pool) == (200, bodies[2])  # reading resumed where the body ended
    assert await read_socket_lent(pool, len(bodies[3])) == bodies[3]

    assert fake.connections == 1
    await pool.close()


async def test_a_handed_over_body_not_read_to_its_end_closes_its_connection(
    storage: Start,
) -> None:
    fake = storage(lambda n: ok(b"x" * 100_000))
    pool = await serve(fake)
    response = await pool.request("GET", "/k", {})
    assert response.lend_socket() is not None
    response.release()  # socket_read_to_end() never called: the socket is somewhere mid-body

    assert await read_all(pool) == (200, b"x" * 100_000)
    assert fake.connections == 2
    await pool.close()


async def test_a_body_that_stalls_times_out_after_the_idle_allowance(storage: Start) -> None:
    fake = storage(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")  # 6 short
    pool = await serve(fake)
    response = await pool.request("GET", "/k", {})
    assert await response.read_chunk(10, idle=0.05) == b"abcd"
    with pytest.raises(TimeoutError):
        await response.read_chunk(10, idle=0.05)
    response.close()
    await pool.close()


async def test_the_request_carries_method_target_and_headers(storage: Start) -> None:
    fake = storage(lambda n: ok(b""))
    pool = await serve(fake)
    await read_all(pool)
    assert fake.requests == [b"GET /bucket/key HTTP/1.1\r\nHost: storage\r\n\r\n"]
    await pool.close()


async def test_a_body_left_unread_closes_its_connection(storage: Start) -> None:
    fake = storage(lambda n: ok(b"x" * 100))
    pool = await serve(fake)
    response = await pool.request("GET", "/k", {})
    assert await response.read_chunk(10) == b"x" * 10
    response.release()

    assert await read_all(pool) == (200, b"x" * 100)
    assert fake.connections == 2
    await pool.close()


async def test_a_head_answer_has_no_body_whatever_its_length(storage: Start) -> None:
    fake = storage(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
    pool = await serve(fake)
    response = await pool.request("HEAD", "/k", {})
    assert (response.status, response.headers["content-length"]) == (200, "5000")
    assert await response.read_chunk(10) == b""
    assert await read_all(pool, "HEAD") == (200, b"")
    assert fake.connections == 1
    await pool.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_a_connection_the_server_will_close_is_not_reused(
    storage: Start, reply: bytes
) -> None:
    fake = storage(lambda n: reply)
    pool = await serve(fake)
    assert await read_all(pool) == (200, b"ok")
    assert await read_all(pool) == (200, b"ok")
    assert fake.connections == 2
    await pool.close()


async def test_an_idle_connection_the_server_dropped_is_retried_on_a_new_one(
    storage: Start,
) -> None:
    fake = storage(lambda n: None if n == 2 else ok(b"fine"))
    pool = await serve(fake)
    assert await read_all(pool) == (200, b"fine")

    assert await read_all(pool) == (200, b"fine")  # request 2 was dropped, 3 answered

    assert fake.connections == 2
    await pool.close()


async def test_a_new_connection_closed_without_an_answer_is_an_error(
    storage: Start,
) -> None:
    fake = storage(lambda n: None)
    pool = await serve(fake)
    with pytest.raises(OriginProtocolError, match="without answering"):
        await pool.request("GET", "/k", {})
    await pool.close()


async def test_a_body_cut_short_is_an_error() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    pool = ConnectionPool(
        "127.0.0.1", server.sockets[0].getsockname()[1], tls=False, size=1, connect_timeout=2
    )
    response = await pool.request("GET", "/k", {})
    assert await response.read_chunk(100) == b"abc"
    with pytest.raises(OriginProtocolError, match="7 bytes to go"):
        await response.read_chunk(100)
    response.close()
    server.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "status line"),
        (b"ICY 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 \xb200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "too large"),
    ],
    ids=[
        "http2",
        "bad-code",
        "not-http",
        "no-colon",
        "folded",
        "two-lengths",
        "negative",
        "superscript-code",
        "superscript-length",
        "huge",
    ],
)
async def test_an_unreadable_answer_is_an_error_never_a_guess(
    storage: Start, reply: bytes, message: str
) -> None:
    fake = storage(lambda n: reply)
    pool = await serve(fake)
    with pytest.raises(OriginProtocolError, match=message):
        await pool.request("GET", "/k", {})
    await pool.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    ],
    ids=["chunked", "no-length"],
)
async def test_a_body_without_a_length_cannot_be_streamed(storage: Start, reply: bytes) -> None:
    fake = storage(lambda n: reply)
    pool = await serve(fake)
    response = await pool.request("GET", "/k", {})
    with pytest.raises(OriginProtocolError, match="Content-Length"):
        await response.read_chunk(10)
    response.close()
    await pool.close()


async def test_an_error_status_is_returned_and_its_connection_not_reused(
    storage: Start,
) -> None:
    fake = storage(lambda n: b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n<NoSuch/>")
    pool = await serve(fake)
    response = await pool.request("GET", "/k", {})
    assert response.status == 404
    response.release()  # the XML is never read: the connection goes
    await pool.request("GET", "/k", {})
    assert fake.connections == 2
    await pool.close()


async def test_nothing_listening_is_an_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = ConnectionPool("127.0.0.1", port, tls=False, size=1, connect_timeout=2)
    with pytest.raises(OriginProtocolError, match="cannot connect"):
        await pool.request("GET", "/k", {})


async def test_no_more_than_size_connections_are_in_use_at_once(storage: Start) -> None:
    fake = storage(lambda n: ok(b"body"))
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    pool = ConnectionPool("127.0.0.1", fake.port, tls=False, size=1, connect_timeout=2)
    first = await pool.request("GET", "/a", {})
    second = asyncio.create_task(pool.request("GET", "/b", {}))
    with pytest.raises(TimeoutError):  # it waits for the only slot
        await asyncio.wait_for(asyncio.shield(second), 0.2)

    assert await first.read_chunk(100) == b"body"
    first.release()

    response = await asyncio.wait_for(second, 5)
    assert response.status == 200
    assert fake.connections == 1  # the second request took the first one's connection
    response.close()
    await pool.close()


async def test_a_head_not_sent_within_the_time_is_a_timeout_and_its_connection_goes(
    storage: Start,
) -> None:
    fake = storage(lambda n: b"" if n == 1 else ok(b"late"))  # the first request: no answer
    pool = await serve(fake)
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/k", {}, within=0.05)
    response = await pool.request("GET", "/k", {}, within=5)
    assert (response.status, await response.read_chunk(100)) == (200, b"late")
    assert fake.connections == 2  # the silent connection was not reused
    response.release()
    await pool.close()


async def test_waiting_for_a_slot_counts_against_the_time(storage: Start) -> None:
    fake = storage(lambda n: ok(b"body"))
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    pool = ConnectionPool("127.0.0.1", fake.port, tls=False, size=1, connect_timeout=2)
    held = await pool.request("GET", "/a", {})
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/b", {}, within=0.05)
    assert await held.read_chunk(100) == b"body"
    held.release()
    response = await pool.request("GET", "/c", {}, within=5)  # the slot is free again
    assert response.status == 200
    response.close()
    await pool.close()


async def test_a_wait_given_up_leaves_the_slot_to_the_next_waiter(storage: Start) -> None:
    fake = storage(lambda n: ok(b"body"))
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    pool = ConnectionPool("127.0.0.1", fake.port, tls=False, size=1, connect_timeout=2)
    held = await pool.request("GET", "/a", {})
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/b", {}, within=0.05)  # gives up waiting
    waiting = asyncio.create_task(pool.request("GET", "/c", {}, within=5))
    assert await held.read_chunk(100) == b"body"
    held.release()  # the slot goes to the one still waiting

    third = await asyncio.wait_for(waiting, 5)
    assert await third.read_chunk(100) == b"body"
    third.release()
    fourth = await pool.request("GET", "/d", {}, within=5)  # and back to the pool after it
    assert fourth.status == 200
    fourth.close()
    await pool.close()


async def test_header_names_are_read_whatever_their_case_and_a_repeated_length_may_agree(
    storage: Start,
) -> None:
    fake = storage(
        lambda n: (
            b"HTTP/1.1 200 OK\r\nCONTENT-length: 2\r\ncontent-LENGTH:  2 \r\n"
            b"ETag: first\r\netag: second\r\n\r\nok"
        )
    )
    pool = await serve(fake)
    response = await pool.request("GET", "/k", {})
    assert response.headers["etag"] == "first"  # of a repeated header, the first value
    assert await response.read_chunk(10) == b"ok"
    response.release()
    assert await read_all(pool) == (200, b"ok")
    assert fake.connections == 1
    await pool.close()


async def test_a_buffered_read_takes_what_arrived_and_stops_at_the_body_end(
    storage: Start,
) -> None:
    fake = storage(lambda n: ok(b"0123456789") + b"HTTP/1.1 200 OK")  # and the start of more
    pool = await serve(fake)
    response = await pool.request("GET", "/k", {})
    parts = []
    while response.unread:  # what arrived without waiting, else a wait for more
        parts.append(response.read_buffered(4) or await response.read_chunk(4))
    assert b"".join(parts) == b"0123456789"
    assert max(map(len, parts)) <= 4
    assert response.read_buffered(100) == b""  # never past the body's end
    response.close()
    await pool.close()


@given(
    body=st.binary(min_size=1, max_size=64),
    after=st.binary(max_size=16),
    cuts=st.lists(st.integers(0, 80), max_size=4),
    received=st.integers(0, 80),
)
async def test_a_body_is_taken_whole_only_once_all_of_it_arrived_and_never_past_its_end(
    body: bytes, after: bytes, cuts: list[int], received: int
) -> None:
    wire = (body + after)[:received]  # what storage sent so far, in reads cut anywhere
    connection = _Connection(2**16, asyncio.get_running_loop())
    points = [0, *sorted(c for c in cuts if c < len(wire)), len(wire)]
    for start, end in itertools.pairwise(points):
        if end > start:
            connection.data_received(wire[start:end])
    pool = ConnectionPool("127.0.0.1", 9, tls=False, size=1, connect_timeout=1)
    response = OriginResponse(pool, connection, 200, {}, len(body), reusable=True)

    whole = response.read_arrived()

    if len(wire) >= len(body):
        assert whole == body
        assert (response.unread, connection.buffered) == (False, len(wire) - len(body))
    else:
        assert whole is None
        left = b"".join(iter(lambda: response.read_buffered(100), b""))
        assert left == wire  # nothing was taken


async def test_a_body_of_unknown_length_is_never_taken_whole() -> None:
    connection = _Connection(2**16, asyncio.get_running_loop())
    connection.data_received(b"abc")
    pool = ConnectionPool("127.0.0.1", 9, tls=False, size=1, connect_timeout=1)
    response = OriginResponse(pool, connection, 200, {}, None, reusable=False)
    assert response.read_arrived() is None
