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
from pathlib import Path

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import relay
from gateway.storage import OriginError, OriginTimeout, SocketBody
from tests.descriptors import open_fds
from tests.polling import eventually

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


# --- the send timeout --------------------------------------------------------------------------


def stalled_client(wires: Wires) -> None:
    """A client that stops reading, with a receive buffer far smaller than what is sent."""
    wires.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


@pytest.mark.parametrize(
    ("received", "stored"),
    [((os.urandom(16 * 1024 * 1024),), 0), ((), 16 * 1024 * 1024)],
    ids=["received-bytes", "spliced"],
)
async def test_a_client_that_takes_nothing_for_the_send_timeout_stalls_the_relay(
    wires: Wires, received: tuple[bytes, ...], stored: int
) -> None:
    stalled_client(wires)
    job = wires.relay(wires.body(received, stored, idle=30))
    feeding = asyncio.ensure_future(send(wires.storage, b"s" * stored))
    with pytest.raises(relay.ClientStalled):  # never OriginTimeout: storage kept sending
        await job.job.run(job.body, send_timeout=0.2)
    feeding.cancel()
    assert 0 < job.sent < sum(map(len, received)) + stored
    assert wires.finished == []


@pytest.mark.parametrize("how", ["write", "sendfile"])
async def test_a_client_that_takes_nothing_for_the_send_timeout_stalls_the_sender(
    wires: Wires, how: str, tmp_path: Path
) -> None:
    stalled_client(wires)
    data = os.urandom(16 * 1024 * 1024)
    (tmp_path / "slice").write_bytes(data)
    sender = relay.Sender.open(wires.client_side.fileno(), send_timeout=0.2)
    assert sender is not None
    with (tmp_path / "slice").open("rb") as file:
        sending = (
            sender.write(data) if how == "write" else sender.sendfile(file.fileno(), 0, len(data))
        )
        try:
            with pytest.raises(relay.ClientStalled):
                await sending
            assert 0 < sender.sent < len(data)
        finally:
            sender.close()


async def test_a_client_that_keeps_reading_slowly_is_not_stalled(wires: Wires) -> None:
    """It reads 4 KiB every 20 ms, for longer than the send timeout in all, then the rest."""
    wires.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    size = 3 * relay.PIPE_BYTES[0]
    stored = os.urandom(size)
    loop = asyncio.get_running_loop()
    taken = bytearray()
    started = loop.time()

    async def slow_reader() -> None:
        while len(taken) < size:
            slow = loop.time() - started < 0.6
            chunk = await loop.sock_recv(wires.client, 4096 if slow else 1 << 20)
            assert chunk
            taken.extend(chunk)
            if slow:
                await asyncio.sleep(0.02)  # the pace of a slow client, not a synchronisation

    job = wires.relay(wires.body((), size, idle=30))
    await asyncio.gather(
        send(wires.storage, stored), job.job.run(job.body, send_timeout=0.2), slow_reader()
    )
    assert bytes(taken) == stored
    assert loop.time() - started > 0.2  # it did wait longer than the timeout in all


class Probe:
    """The client's acknowledged bytes, as a test sets them."""

    def __init__(self, value: int | None) -> None:
        self.value = value

    def __call__(self) -> int | None:
        return self.value


@pytest.mark.parametrize(
    ("mark", "later", "stalls"),
    [(1000, 1000, True), (1000, 5000, False), (None, None, True)],
    ids=["nothing-taken", "bytes-taken", "kernel-says-nothing"],
)
async def test_a_wait_past_its_deadline_stalls_unless_the_client_took_bytes_since(
    mark: int | None, later: int | None, stalls: bool
) -> None:
    probe, stalled = Probe(mark), []
    watch = relay.SendWatch(asyncio.get_running_loop(), 60, probe, lambda: stalled.append(1))
    watch.waiting()
    timer = watch._timer
    assert timer is not None
    timer.cancel()
    watch._deadline = asyncio.get_running_loop().time() - 1  # the timer fires, past it
    probe.value = later
    watch._expired()

    assert stalled == ([1] if stalls else [])
    assert (watch._timer is None) is stalls  # taking bytes buys another send_timeout
    watch.cancel()


async def test_a_socket_that_took_writes_again_leaves_the_timer_nothing_to_do() -> None:
    stalled: list[int] = []
    loop = asyncio.get_running_loop()
    watch = relay.SendWatch(loop, 60, Probe(1000), lambda: stalled.append(1))
    watch.waiting()
    first = watch._timer
    watch.resumed()
    watch.waiting()  # a later wait: the same timer, a later deadline
    assert watch._timer is first
    watch.resumed()
    assert first is not None
    first.cancel()
    watch._expired()

    assert stalled == []
    assert watch._timer is None


async def test_a_timer_finding_a_later_deadline_waits_for_it() -> None:
    stalled: list[int] = []
    loop = asyncio.get_running_loop()
    watch = relay.SendWatch(loop, 60, Probe(1000), lambda: stalled.append(1))
    watch.waiting()
    assert watch._timer is not None
    assert watch._deadline is not None
    watch._timer.cancel()
    watch._expired()  # early: the deadline is a minute away

    assert stalled == []
    assert watch._timer is not None
    # uvloop keeps timers in whole milliseconds: when() may be a tick (1 ms) off the deadline
    assert watch._timer.when() == pytest.approx(watch._deadline, abs=2e-3)
    watch.cancel()


async def test_the_kernel_counts_the_bytes_a_client_acknowledged(wires: Wires) -> None:
    sink = wires.client_side.fileno()
    before = relay.acked_fd(sink)
    assert before is not None
    await send(wires.client_side, b"a" * 1000)
    assert await receive(wires.client, 1000) == b"a" * 1000
    await eventually(lambda: relay.acked_fd(sink) == before + 1000)  # its ACK may be delayed
