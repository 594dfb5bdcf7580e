"""The zero-copy relay over real loopback TCP sockets: what the client receives, how each side's
failure surfaces, and that no descriptor outlives a relay however it ends."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import relay
from gateway.storage import OriginError, OriginTimeout, SocketBody
from tests.descriptors import open_fds

pytestmark = pytest.mark.skipif(not relay.AVAILABLE, reason="splice(2) is Linux-only")


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    near.setblocking(False)
    far.setblocking(False)
    return near, far


@dataclass
class Running:
    job: relay.Relay
    body: SocketBody

    async def run(self) -> None:
        await self.job.run(self.body)

    @property
    def sent(self) -> int:
        return self.job.sent


@dataclass
class Wires:
    """storage -> [origin side | relay | client side] -> client, as four socket ends."""

    storage: socket.socket
    origin_side: socket.socket
    client_side: socket.socket
    client: socket.socket
    finished: list[bool] = field(default_factory=list)

    def body(self, received: tuple[bytes, ...], remaining: int, idle: float = 5.0) -> SocketBody:
        return SocketBody(
            received, self.origin_side.fileno(), remaining, idle, lambda: self.finished.append(True)
        )

    def relay(self, body: SocketBody) -> Running:
        job = relay.Relay.open(self.client_side.fileno())
        assert job is not None
        return Running(job, body)

    def close(self) -> None:
        for end in (self.storage, self.origin_side, self.client_side, self.client):
            end.close()


@pytest.fixture
def wires() -> Iterator[Wires]:
    storage, origin_side = tcp_pair()
    client_side, client = tcp_pair()
    made = Wires(storage, origin_side, client_side, client)
    yield made
    made.close()


async def receive(sock: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < count:
        chunk = await loop.sock_recv(sock, min(1 << 20, count - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def relay_through(wires: Wires, received: tuple[bytes, ...], stored: bytes) -> bytes:
    job = wires.relay(wires.body(received, len(stored)))
    expected = sum(map(len, received)) + len(stored)
    _, _, got = await asyncio.gather(
        send(wires.storage, stored), job.run(), receive(wires.client, expected)
    )
    assert job.sent == expected
    return got


@pytest.mark.parametrize(
    ("received", "size"),
    [
        ((), 1),
        ((b"head",), 0),
        ((b"a" * 1000, b"b" * 3), 5000),
        ((), 3 * relay.PIPE_BYTES[0] + 12345),  # more than the pipe holds
        ((os.urandom(700_000),), 2 * relay.PIPE_BYTES[0]),  # a big already-received part
    ],
    ids=["one-byte", "received-only", "both", "larger-than-the-pipe", "large-received"],
)
async def test_the_client_gets_the_received_bytes_then_the_rest_in_order(
    wires: Wires, received: tuple[bytes, ...], size: int
) -> None:
    stored = os.urandom(size)
    assert await relay_through(wires, received, stored) == b"".join(received) + stored
    assert wires.finished == [True]


@settings(max_examples=40, deadline=None)
@given(
    received=st.lists(st.binary(min_size=1, max_size=3000), max_size=4).map(tuple),
    size=st.integers(min_value=0, max_value=300_000),
    extra=st.binary(max_size=100),
)
def test_exactly_the_body_is_relayed_and_what_follows_it_stays_unread(
    received: tuple[bytes, ...], size: int, extra: bytes
) -> None:
    async def scenario() -> None:
        storage, origin_side = tcp_pair()
        client_side, client = tcp_pair()
        wires = Wires(storage, origin_side, client_side, client)
        try:
            stored = os.urandom(size)
            job = wires.relay(wires.body(received, size))
            expected = sum(map(len, received)) + size
            _, _, got = await asyncio.gather(
                send(storage, stored + extra), job.run(), receive(client, expected)
            )
            assert got == b"".join(received) + stored
            if extra:
                assert await receive(origin_side, len(extra)) == extra
        finally:
            wires.close()

    uvloop.run(scenario())


async def test_storage_closing_early_is_an_origin_error(wires: Wires) -> None:
    job = wires.relay(wires.body((), 10_000))
    await send(wires.storage, b"x" * 4000)
    wires.storage.close()
    with pytest.raises(OriginError, match="6000 bytes to go"):
        await job.run()
    assert job.sent == 4000
    assert wires.finished == []


async def test_storage_going_silent_is_an_origin_timeout(wires: Wires) -> None:
    job = wires.relay(wires.body((b"first",), 10_000, idle=0.05))
    with pytest.raises(OriginTimeout):
        await job.run()
    assert wires.finished == []


async def test_a_client_that_resets_is_a_connection_error(wires: Wires) -> None:
    wires.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wires.client.close()  # RST: nothing more can be delivered
    size = 8 * relay.PIPE_BYTES[0]
    job = wires.relay(wires.body((), size))
    feeding = asyncio.ensure_future(send(wires.storage, b"y" * size))
    with pytest.raises(ConnectionError):
        await job.run()
    feeding.cancel()
    assert wires.finished == []


@pytest.mark.parametrize("ending", ["complete", "origin_error", "cancelled"])
async def test_no_descriptor_outlives_the_relay(wires: Wires, ending: str) -> None:
    if ending == "origin_error":
        wires.storage.close()
    before = open_fds()
    job = wires.relay(wires.body((), 100_000, idle=30))
    task = asyncio.ensure_future(job.run())
    if ending == "complete":
        await asyncio.gather(send(wires.storage, b"z" * 100_000), receive(wires.client, 100_000))
        await task
    elif ending == "origin_error":
        with pytest.raises(OriginError):
            await task
    else:
        await asyncio.sleep(0)  # let it start waiting for storage
        assert open_fds() > before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert open_fds() == before


class Transport:
    def __init__(self, extra: dict[str, object], closing: bool = False) -> None:
        self.extra, self.closing = extra, closing

    def get_extra_info(self, name: str) -> object:
        return self.extra.get(name)

    def is_closing(self) -> bool:
        return self.closing


def test_only_an_open_plain_tcp_transport_is_relayed_to(wires: Wires) -> None:
    sock = wires.client_side
    assert relay.plain_socket(Transport({"socket": sock})) == sock.fileno()
    tls = ssl.create_default_context()
    assert relay.plain_socket(Transport({"socket": sock, "sslcontext": tls})) is None
    assert relay.plain_socket(Transport({"socket": sock}, closing=True)) is None
    assert relay.plain_socket(Transport({})) is None
    assert relay.plain_socket(None) is None


def test_a_process_out_of_descriptors_gets_no_relay_and_loses_none(wires: Wires) -> None:
    used = {int(name) for name in os.listdir("/proc/self/fd")}
    lowest_free = next(fd for fd in range(len(used) + 1) if fd not in used)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_fds()
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + 2, hard))  # room for two, not four
    try:
        assert relay.Relay.open(wires.client_side.fileno()) is None
        assert open_fds() == before
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


REFUSED = 0x80001000  # past 2 GiB: EINVAL whatever the process's privileges


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        ((1024 * 1024, 256 * 1024), 1024 * 1024),
        ((REFUSED, 256 * 1024), 256 * 1024),  # the first refused: the next one
        ((REFUSED,), 64 * 1024),  # every size refused: the kernel's default
    ],
    ids=["first", "second", "default"],
)
async def test_a_relay_gets_the_largest_pipe_the_kernel_grants(
    wires: Wires, monkeypatch: pytest.MonkeyPatch, asked: tuple[int, ...], granted: int
) -> None:
    monkeypatch.setattr(relay, "PIPE_BYTES", asked)
    job = relay.Relay.open(wires.client_side.fileno())
    assert job is not None
    assert job.pipe_bytes == granted
    stored = os.urandom(3 * granted + 1)
    _, _, got = await asyncio.gather(
        send(wires.storage, stored),
        job.run(wires.body((), len(stored))),
        receive(wires.client, len(stored)),
    )
    assert got == stored


def test_a_pipe_too_small_to_pay_off_means_no_relay_and_no_descriptor_kept(
    wires: Wires, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when the user's pipe quota is used up and the kernel hands out two-page pipes."""
    monkeypatch.setattr(relay, "MIN_PIPE_BYTES", 2 * 1024 * 1024)
    before = open_fds()
    assert relay.Relay.open(wires.client_side.fileno()) is None
    assert open_fds() == before


async def test_a_sender_bounds_the_unsent_bytes_a_client_socket_queues() -> None:
    """So the sender, not the receiver's window updates, pushes a sendfile body out (see
    `relay.NOTSENT_LOWAT`); bytes in flight stay unbounded."""
    near, far = tcp_pair()
    with near, far:
        sender = relay.Sender.open(near.fileno())
        assert sender is not None
        sender.close()
        lowat = near.getsockopt(socket.IPPROTO_TCP, relay._TCP_NOTSENT_LOWAT)

    assert lowat == relay.NOTSENT_LOWAT
