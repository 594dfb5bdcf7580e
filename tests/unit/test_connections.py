"""Specification of `gateway.connections` without a server: which connections go past the cap,
and the cap `max_connections=auto` derives from the open-file limit."""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.connections import Closable, Guard, IdleFirst, Limits, auto_cap, limits
from gateway.drain import InFlight
from gateway.errors import error_response
from gateway.http_server import Connection, Request, Response, Server
from gateway.settings import Settings, SettingsError, load

REQUIRED = {"GATEWAY_ORIGIN": "file:///srv/objects", "GATEWAY_KEYRING": "/etc/gateway/k.json"}


def settings(**values: str) -> Settings:
    return load(environ=REQUIRED | {f"GATEWAY_{k.upper()}": v for k, v in values.items()})


# --- the deadlines ---------------------------------------------------------------------------


class FakeConnection:
    closed = False

    def force_close(self) -> None:
        self.closed = True


def fake_connection() -> tuple[FakeConnection, Closable]:
    fake = FakeConnection()
    return fake, fake


@pytest.mark.parametrize("passed", [False, True], ids=["before", "after"])
async def test_a_timer_set_for_an_earlier_deadline_closes_only_past_the_current_one(
    passed: bool,
) -> None:
    guard = Guard(Limits(header_timeout=60, keepalive_timeout=120, max_connections=8))
    fake, connection = fake_connection()
    guard.opened(connection)
    timer = guard._timers[connection]
    guard.started(connection)
    guard.finished(connection)  # the deadline moves on, by the keep-alive timeout
    assert guard._timers[connection] is timer  # without a new timer
    deadline, reason = guard._deadlines[connection]
    if passed:
        guard._deadlines[connection] = (deadline - 1000, reason)
    timer.cancel()
    guard._expired(connection)  # the timer fires, at the header deadline

    assert fake.closed is passed
    assert guard.closed["keepalive_timeout"] == int(passed)
    if not passed:
        # re-armed for the deadline (the loop keeps timer times to the millisecond)
        assert guard._timers[connection].when() == pytest.approx(deadline, abs=1e-3)
        guard.lost(connection)
    assert connection not in guard._timers


async def test_a_busy_connection_is_left_alone_by_its_timer_until_its_response() -> None:
    guard = Guard(Limits(header_timeout=60, keepalive_timeout=120, max_connections=8))
    fake, connection = fake_connection()
    guard.opened(connection)
    guard.started(connection)
    guard._timers[connection].cancel()
    guard._expired(connection)

    assert not fake.closed
    assert connection not in guard._timers
    guard.finished(connection)
    assert guard._timers[connection].when() == pytest.approx(
        guard._deadlines[connection][0], abs=1e-3
    )
    guard.lost(connection)


# --- the eviction policy ---------------------------------------------------------------------


def test_within_the_cap_no_connection_is_closed() -> None:
    policy: IdleFirst[str] = IdleFirst(cap=3)

    assert [policy.opened(name) for name in "abc"] == [[], [], []]
    assert len(policy) == 3


def test_past_the_cap_the_connection_idle_the_longest_is_closed() -> None:
    policy: IdleFirst[str] = IdleFirst(cap=3)
    for name in "abc":
        policy.opened(name)

    assert policy.opened("d") == ["a"]
    assert policy.opened("e") == ["b"]
    assert len(policy) == 3


def test_a_connection_whose_response_was_sent_is_now_the_most_recently_idle() -> None:
    policy: IdleFirst[str] = IdleFirst(cap=3)
    for name in "abc":
        policy.opened(name)
    policy.started("a")
    policy.finished("a")

    assert policy.opened("d") == ["b"]
    assert policy.opened("e") == ["c"]
    assert policy.opened("f") == ["a"]


def test_a_connection_with_a_request_being_handled_is_never_closed() -> None:
    policy: IdleFirst[str] = IdleFirst(cap=3)
    for name in "abc":
        policy.opened(name)
        policy.started(name)

    assert policy.opened("d") == ["d"]  # every other is busy: the newcomer goes
    assert not policy.is_idle("d")
    assert len(policy) == 3


def test_a_closed_connection_gives_its_place_back() -> None:
    policy: IdleFirst[str] = IdleFirst(cap=2)
    policy.opened("a")
    policy.opened("b")
    policy.closed("a")

    assert policy.opened("c") == []
    assert len(policy) == 2


@pytest.mark.parametrize("event", ["started", "finished"])
def test_a_connection_no_longer_counted_is_not_counted_again(event: str) -> None:
    policy: IdleFirst[str] = IdleFirst(cap=1)
    policy.opened("a")
    policy.opened("b")  # closes "a"

    assert getattr(policy, event)("a") is False
    assert len(policy) == 1


# A model of the policy: every connection with the moment it last became idle (or None: busy).
Step = tuple[str, int]
steps = st.lists(
    st.tuples(st.sampled_from(["open", "start", "finish", "close"]), st.integers(0, 30)),
    max_size=200,
)


@given(cap=st.integers(1, 8), script=steps)
def test_the_policy_keeps_the_cap_and_always_closes_the_longest_idle(
    cap: int, script: list[Step]
) -> None:
    policy: IdleFirst[int] = IdleFirst(cap)
    idle_since: dict[int, int | None] = {}  # the model: None while a request is handled
    clock, fresh = itertools.count(), itertools.count(100)
    for action, pick in script:
        known = sorted(idle_since)
        target = known[pick % len(known)] if known else None
        if action == "open":
            new = next(fresh)
            idle_since[new] = next(clock)
            closed = policy.opened(new)
            while len(idle_since) > cap:
                idle = {c: t for c, t in idle_since.items() if t is not None}
                oldest = min(idle, key=idle.__getitem__)
                assert closed.pop(0) == oldest
                del idle_since[oldest]
            assert closed == []
            assert len(policy) == len(idle_since) <= cap
        elif target is None:
            continue
        elif action == "start" and idle_since[target] is not None:
            assert policy.started(target)
            idle_since[target] = None
        elif action == "finish" and idle_since[target] is None:
            assert policy.finished(target)
            idle_since[target] = next(clock)
        elif action == "close":
            policy.closed(target)
            del idle_since[target]
        for connection, since in idle_since.items():
            assert policy.is_idle(connection) == (since is not None)


# --- the cap from the open-file limit --------------------------------------------------------


@pytest.mark.parametrize(
    ("open_files", "origin_connections", "cap"),
    [(1024, 256, 704), (65536, 256, 65216), (1024, 32, 928), (4096, 10000, -5968)],
)
def test_auto_leaves_the_storage_connections_and_a_reserve_out_of_the_open_file_limit(
    open_files: int, origin_connections: int, cap: int
) -> None:
    assert auto_cap(open_files, origin_connections) == cap


def test_auto_limits_follow_this_processes_open_file_limit() -> None:
    assert limits(settings(), open_files=1024) == Limits(10.0, 15.0, 704)
    assert limits(settings(origin_connections="64"), open_files=1024).max_connections == 896


def test_a_set_max_connections_is_used_whatever_the_open_file_limit() -> None:
    assert limits(settings(max_connections="5000"), open_files=1024).max_connections == 5000


def test_an_open_file_limit_too_low_for_auto_stops_the_start_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"^GATEWAY_MAX_CONNECTIONS: auto leaves -64 .*256"):
        limits(settings(), open_files=256)


# --- the send timeout of the connection's own writes ------------------------------------------


class FakeSocket:
    def __init__(self) -> None:
        self.acked = 1000

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        return bytes(120) + self.acked.to_bytes(8, sys.byteorder) + bytes(size - 128)


class FakeTransport:
    def __init__(self) -> None:
        self.socket = FakeSocket()
        self.aborted = False

    def get_extra_info(self, name: str) -> object:
        return self.socket if name == "socket" else None

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass


async def stalling_connection() -> tuple[Guard, Connection, FakeTransport]:
    async def handler(request: Request) -> Response:
        raise AssertionError("no request is made")

    guard = Guard(Limits(60, 120, 8, send_timeout=30))
    server = Server(
        handler, guard=guard, in_flight=InFlight(), refuse=lambda s: error_response(s, "x")
    )
    connection = server()
    transport = FakeTransport()
    connection.transport = cast(asyncio.Transport, transport)
    return guard, connection, transport


def expire(connection: Connection) -> None:
    """Its send timer fires, past the deadline."""
    watch = connection._send_watch
    assert watch is not None
    assert watch._timer is not None
    watch._timer.cancel()
    if watch._deadline is not None:
        watch._deadline -= 1000
    watch._expired()


@pytest.mark.parametrize(
    ("resumed", "acked", "closed"),
    [(False, 0, True), (True, 0, False), (False, 4096, False)],
    ids=["stalled", "drained-before", "reading-slowly"],
)
async def test_a_response_whose_writes_stay_paused_past_the_send_timeout_is_aborted(
    resumed: bool, acked: int, closed: bool
) -> None:
    guard, connection, transport = await stalling_connection()
    connection.pause_writing()  # the transport's buffer passed its high-water mark
    assert connection._send_watch is not None
    assert connection._send_watch.seconds == 30
    if resumed:
        connection.resume_writing()
    transport.socket.acked += acked
    expire(connection)

    assert transport.aborted is closed
    assert connection.send_timed_out is closed
    assert guard.closed["send_timeout"] == int(closed)
    connection.connection_lost(None)
    assert connection._send_watch._timer is None


async def test_a_stall_is_counted_once_however_often_it_is_reported() -> None:
    guard, connection, transport = await stalling_connection()
    connection.send_stalled()  # a relay found it stalled
    connection.send_stalled()

    assert transport.aborted
    assert guard.closed["send_timeout"] == 1


async def test_writes_that_never_pause_cost_no_timer() -> None:
    _, connection, _ = await stalling_connection()
    assert connection._send_watch is None


def test_the_send_timeout_is_the_settings() -> None:
    assert limits(settings(send_timeout="2.5"), open_files=1024).send_timeout == 2.5
