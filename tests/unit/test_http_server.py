"""Specification of the public listener's HTTP/1.1 server (`gateway.http_server`): framing,
limits, keep-alive and the answers' heads, with a small handler in place of the pipeline.

Bytes go into a `Connection` through a fake transport (in any segmentation: hypothesis cuts
the stream anywhere) and its answers are read back by h11, an independent parser, so a head
the server gets wrong fails here. tests/integration run the pipeline on it over sockets.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.connections import Guard, Limits
from gateway.drain import InFlight
from gateway.errors import HEAD_REFUSALS, error_response
from gateway.http_server import Request, Response, Server, StreamResponse
from gateway.http_server.connection import (
    MAX_FIELD,
    MAX_HEADERS,
    MAX_PIPELINED,
    MAX_TARGET,
    Connection,
)
from gateway.http_server.server import Handler


class FakeTransport:
    """What a connection writes, and whether it closed or aborted."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.protocol: Connection | None = None
        self.full_after: int | None = None  # bytes past which the buffer is "full"
        self.filled = asyncio.Event()

    def get_extra_info(self, name: str) -> object:
        return {"peername": ("192.0.2.7", 50000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after close"
        self.written += data
        if self.full_after is not None and len(self.written) > self.full_after:
            self.full_after = None
            assert self.protocol is not None
            self.protocol.pause_writing()  # as a transport past its high-water mark does
            self.filled.set()

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0


async def echo(request: Request) -> Response:
    """Answers what it was asked: method, target, version, a header, and the body."""
    body = await request.content.read()
    seen = {
        "method": request.method,
        "target": request.raw_path,
        "version": list(request.version),
        "x": request.headers.get("X-Test"),
        "body": body.decode("latin-1"),
    }
    return Response(200, {"Content-Type": "application/json"}, json.dumps(seen).encode())


@dataclass
class Wire:
    """One connection of a server running `handler`, fed by the test."""

    handler: Handler = echo
    transport: FakeTransport = field(default_factory=FakeTransport)

    def __post_init__(self) -> None:
        self.in_flight = InFlight()
        self.server = Server(
            self.handler,
            guard=Guard(Limits(60, 60, 100)),
            in_flight=self.in_flight,
            refuse=lambda status: error_response(status, HEAD_REFUSALS[status].code),
        )
        self.connection: Connection = self.server()
        self.transport.protocol = self.connection
        self.connection.connection_made(self.transport)  # type: ignore[arg-type]

    async def send(self, *pieces: bytes) -> None:
        """Feed `pieces`, and wait until every request they hold has been answered."""
        for piece in pieces:
            self.connection.data_received(piece)
        await self.settled()

    async def settled(self) -> None:
        assert await self.in_flight.settle(5)

    def answers(self) -> list[tuple[h11.Response, bytes]]:
        """The answers written so far, as h11 reads them (for GETs)."""
        return read_answers(bytes(self.transport.written))


def read_answers(data: bytes, method: bytes = b"GET") -> list[tuple[h11.Response, bytes]]:
    client = h11.Connection(h11.CLIENT)
    answers: list[tuple[h11.Response, bytes]] = []
    if not data:
        return answers  # (an empty read would be the end of the stream to h11)
    client.receive_data(data)
    while True:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
        client.send(h11.EndOfMessage())
        response = None
        body = b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return answers if response is None else [*answers, (response, body)]
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                answers.append((response, body))
                break
            elif isinstance(event, h11.ConnectionClosed):
                return answers
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            return answers
        client.start_next_cycle()


def header(response: h11.Response, name: str) -> str | None:
    values = [v.decode() for n, v in response.headers if n == name.lower().encode()]
    assert len(values) <= 1, f"{name} repeated"
    return values[0] if values else None


def get(target: str = "/a", *lines: str, version: str = "1.1") -> bytes:
    head = [f"GET {target} HTTP/{version}", "Host: t", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def put(body: bytes, *lines: str) -> bytes:
    head = ["PUT /up HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# --- framing -----------------------------------------------------------------------------------


PIPELINE = get("/one", "X-Test: 1") + put(b"a body", "X-Test: 2") + get("/three", "X-Test: 3")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, len(PIPELINE)), max_size=8))
async def test_pipelined_requests_are_answered_in_order_however_the_bytes_are_cut(
    cuts: list[int],
) -> None:
    wire = Wire()
    points = [0, *sorted(cuts), len(PIPELINE)]
    await wire.send(*(PIPELINE[a:b] for a, b in itertools.pairwise(points)))

    seen = [json.loads(body) for _, body in wire.answers()]
    assert [(s["method"], s["target"], s["x"], s["body"]) for s in seen] == [
        ("GET", "/one", "1", ""),
        ("PUT", "/up", "2", "a body"),
        ("GET", "/three", "3", ""),
    ]
    assert not wire.transport.closed  # kept alive throughout


async def test_a_chunked_body_reaches_the_handler_decoded() -> None:
    wire = Wire()
    head = b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    await wire.send(head + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    ((_response, body),) = wire.answers()
    assert json.loads(body)["body"] == "hello world"


async def test_the_target_is_passed_as_sent_never_decoded() -> None:
    wire = Wire()
    await wire.send(get("/a%2Fb/c%20d?x=%41&y"))
    ((_, body),) = wire.answers()
    assert json.loads(body)["target"] == "/a%2Fb/c%20d?x=%41&y"


# --- refused heads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request"),
        (b"GET /a HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400, "bad_request"),
        (b"GET /a HTTP/1.1\r\nBad Name: v\r\n\r\n", 400, "bad_request"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
        (b"PUT /a HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "bad_request"),
        (b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "bad_request"),
        (get("/" + "a" * MAX_TARGET), 414, "uri_too_long"),
        (get("/a", "X: " + "v" * MAX_FIELD), 431, "header_fields_too_large"),
        (get("/a", *(f"X-{i}: v" for i in range(MAX_HEADERS + 1))), 431, "header_fields_too_large"),
        (get("/a", "Host: other"), 400, "bad_request"),
        (b"GET /a HTTP/1.1\r\nX: v\r\n\r\n", 400, "bad_request"),
        (
            b"PUT /a HTTP/1.1\r\nHost: t\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"PUT /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Content-Length: 4\r\n\r\nbody",
            400,
            "bad_request",
        ),
    ],
    ids=[
        "space-in-target",
        "control-character",
        "space-in-name",
        "no-request-line",
        "bad-content-length",
        "two-content-lengths",
        "target-too-long",
        "field-too-large",
        "too-many-fields",
        "two-hosts",
        "http-1.1-without-host",
        "two-content-types",
        "upgrade-with-a-body",
    ],
)
async def test_a_head_the_server_cannot_take_is_refused_and_the_connection_closed(
    request_bytes: bytes, status: int, code: str
) -> None:
    wire = Wire()
    await wire.send(request_bytes + get("/after"))

    *_, (response, body) = wire.answers()  # nothing after it is read
    assert (response.status_code, json.loads(body)) == (status, {"error": code})
    assert header(response, "Connection") == "close"
    assert wire.transport.closed


async def test_an_http_1_0_request_without_host_gets_the_listeners_address_as_its_host() -> None:
    def host(request: Request) -> Response:
        return Response(200, {}, request.host.encode())

    wire = Wire(host)
    await wire.send(b"GET /a HTTP/1.0\r\n\r\n")
    ((response, body),) = wire.answers()
    assert (response.status_code, body) == (200, b"127.0.0.1:8080")


async def test_a_head_that_never_ends_is_refused_past_its_bound() -> None:
    wire = Wire()
    await wire.send(b"GET /a HTTP/1.1\r\n")
    for _ in range(40):  # fields under their own bound, 80 KiB of them, never a blank line
        await wire.send(b"X-Pad: " + b"p" * 2000 + b"\r\n")

    ((response, _),) = wire.answers()
    assert response.status_code == 431
    assert wire.transport.closed


async def test_a_refused_head_is_logged_by_its_reason_never_its_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.http")
    wire = Wire()
    await wire.send(b"GET /a?Signature=secret-value HTTP/1.1\r\nX: \x01\r\n\r\n")
    assert "refused a request head" in caplog.text
    assert "secret-value" not in caplog.text


# --- keep-alive and close ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "lines", "kept", "connection"),
    [
        ("1.1", (), True, None),
        ("1.1", ("Connection: close",), False, "close"),
        ("1.0", (), False, "close"),
        ("1.0", ("Connection: keep-alive",), True, "keep-alive"),
    ],
    ids=["1.1", "1.1-close", "1.0", "1.0-keep-alive"],
)
async def test_the_connection_stays_open_as_the_client_asked(
    version: str, lines: tuple[str, ...], kept: bool, connection: str | None
) -> None:
    wire = Wire()
    await wire.send(get("/a", *lines, version=version))

    response = h11_head(bytes(wire.transport.written))
    assert header(response, "Connection") == connection
    assert wire.transport.closed is not kept


def h11_head(data: bytes) -> h11.Response:
    """The status line and headers of the first answer in `data` (any version)."""
    head, _, _ = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    return h11.Response(
        status_code=int(status_line.split()[1]),
        headers=[(name, value) for name, _, value in (line.partition(": ") for line in lines)],
    )


async def test_an_answer_sent_before_its_body_arrived_closes_the_connection() -> None:
    async def refuse_at_once(request: Request) -> Response:
        return Response(403, {}, b"no\n")

    wire = Wire(refuse_at_once)
    await wire.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)

    ((response, body),) = wire.answers()
    assert (response.status_code, body, header(response, "Connection")) == (403, b"no\n", "close")
    assert wire.transport.closed


async def test_a_body_that_arrived_whole_but_unread_leaves_the_connection_open() -> None:
    async def unread(request: Request) -> Response:
        return Response(403, {}, request.raw_path.encode())

    wire = Wire(unread)
    await wire.send(put(b"all of it") + get("/next"))

    assert [body for _, body in wire.answers()] == [b"/up", b"/next"]
    assert not wire.transport.closed


async def test_while_draining_every_answer_closes_its_connection() -> None:
    wire = Wire()
    wire.in_flight.draining = True
    await wire.send(get("/a") + get("/b"))

    ((response, _),) = wire.answers()
    assert header(response, "Connection") == "close"
    assert wire.transport.closed


# --- the answers' heads ----------------------------------------------------------------------


async def test_every_answer_says_date_and_the_servers_name_without_a_version() -> None:
    wire = Wire()
    await wire.send(get())
    ((response, _),) = wire.answers()
    assert header(response, "Server") == "edge-gateway"
    date = header(response, "Date")
    assert date is not None
    assert date.endswith(" GMT")


async def test_a_head_answer_has_the_objects_length_and_no_body() -> None:
    async def head(request: Request) -> Response:
        return Response(200, {"Content-Length": "1234"})

    wire = Wire(head)
    await wire.send(b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n" + get("/b"))

    answers = read_answers(bytes(wire.transport.written), method=b"HEAD")
    assert [(header(r, "Content-Length"), body) for r, body in answers] == [
        ("1234", b""),
        ("1234", b""),  # the GET after it was framed apart: its own answer
    ]


@pytest.mark.parametrize("status", [204, 304])
async def test_an_answer_that_has_no_body_sends_no_length_and_no_body(status: int) -> None:
    async def empty(request: Request) -> Response:
        return Response(status, {"Content-Length": "99", "ETag": '"e"'}, b"ignored")

    wire = Wire(empty)
    await wire.send(get() + get())

    answers = wire.answers()
    assert [(r.status_code, header(r, "Content-Length"), body) for r, body in answers] == [
        (status, None, b""),
        (status, None, b""),
    ]


async def test_a_streamed_answer_sends_its_head_with_its_first_bytes_in_one_write() -> None:
    writes: list[bytes] = []

    async def stream(request: Request) -> StreamResponse:
        response = StreamResponse(200, {"Content-Length": "10"})
        response.prepare(request)
        await response.write(b"01234")
        writes.append(bytes(wire.transport.written))
        await response.write_eof(b"56789")
        return response

    wire = Wire(stream)
    await wire.send(get())

    assert writes[0].endswith(b"\r\n\r\n01234")  # head and first bytes together
    ((_response, body),) = wire.answers()
    assert body == b"0123456789"


async def test_a_stream_cut_short_after_its_head_aborts_the_connection() -> None:
    async def cut(request: Request) -> StreamResponse:
        response = StreamResponse(200, {"Content-Length": "10"})
        response.prepare(request)
        await response.write(b"01234")
        return response  # never finished

    wire = Wire(cut)
    await wire.send(get())
    assert wire.transport.aborted


async def test_a_handler_that_fails_is_answered_500_never_left_hanging() -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    wire = Wire(broken)
    await wire.send(get())
    ((response, body),) = wire.answers()
    assert (response.status_code, json.loads(body)) == (500, {"error": "internal_error"})


async def test_a_line_break_in_a_header_value_is_never_written() -> None:
    async def injected(request: Request) -> Response:
        return Response(200, {"X-Name": "a\r\nSet-Cookie: evil=1"}, b"x")

    wire = Wire(injected)
    await wire.send(get())
    assert b"evil" not in wire.transport.written
    ((response, _),) = wire.answers()
    assert response.status_code == 500
    assert (wire.transport.closed, wire.transport.aborted) == (True, False)  # the 500 goes out


async def test_100_continue_goes_out_only_when_the_handler_asks() -> None:
    sent = asyncio.Event()

    async def continued(request: Request) -> Response:
        assert wire.transport.written == b""  # nothing before the handler's checks
        request.send_continue()
        request.send_continue()  # once
        sent.set()
        return Response(201, {}, await request.content.read())

    wire = Wire(continued)
    head = b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    wire.connection.data_received(head)
    await sent.wait()  # the handler has sent its 100 and waits for the body
    assert wire.transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    await wire.send(b"body")

    ((response, body),) = wire.answers()
    assert (response.status_code, body) == (201, b"body")


async def test_a_large_body_pauses_reading_until_the_handler_reads_it() -> None:
    released = asyncio.Event()

    async def slow(request: Request) -> Response:
        await released.wait()
        return Response(200, {}, str(len(await request.content.read())).encode())

    wire = Wire(slow)
    size = 1024 * 1024
    wire.connection.data_received(
        b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size
    )
    half = size // 2
    wire.connection.data_received(bytes(half))
    assert not wire.transport.reading  # the body stream holds more than its bound
    released.set()
    await wire.send(bytes(size - half))
    ((_, body),) = wire.answers()
    assert body == str(size).encode()
    assert wire.transport.reading


# --- what the review of the server found -------------------------------------------------------


async def test_the_next_pipelined_request_waits_until_the_client_takes_the_answer() -> None:
    started: list[str] = []

    async def answer(request: Request) -> Response:
        started.append(request.raw_path)
        return Response(200, {}, request.raw_path.encode())

    wire = Wire(answer)
    wire.transport.full_after = 10  # the first answer fills the buffer
    wire.connection.data_received(get("/one") + get("/two"))
    await wire.transport.filled.wait()  # the first answer is written, and waits for the client

    assert wire.connection.queued == 1  # the second not taken up
    assert (started, [body for _, body in wire.answers()]) == (["/one"], [b"/one"])
    wire.connection.resume_writing()
    await wire.settled()
    assert [body for _, body in wire.answers()] == [b"/one", b"/two"]


async def test_more_pipelined_heads_in_one_read_than_the_bound_end_the_connection() -> None:
    wire = Wire()
    await wire.send(get() * (MAX_PIPELINED + 2))

    assert len(wire.answers()) == 1  # the one already being handled; nothing queued after it
    assert wire.transport.closed


async def test_a_trailer_section_is_discarded() -> None:
    wire = Wire()
    head = b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    await wire.send(head + b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\n\r\n" + get("/after"))

    bodies = [json.loads(body) for _, body in wire.answers()]
    assert [(b["target"], b["body"]) for b in bodies] == [("/up", "hi"), ("/after", "")]


async def test_a_trailer_that_never_ends_is_cut_past_the_head_bound() -> None:
    wire = Wire()
    head = b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    pieces = [head + b"2\r\nhi\r\n0\r\nX-Pad: ", *(b"p" * 8192 for _ in range(10))]
    await wire.send(*pieces)

    assert wire.answers() == []  # the handler found its body cut off: nobody to answer
    assert wire.transport.closed


async def test_a_cancelled_handler_ends_its_connection_and_starts_nothing_after_it() -> None:
    started: list[str] = []
    entered = asyncio.Event()

    async def hangs(request: Request) -> Response:
        started.append(request.raw_path)
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("never")

    wire = Wire(hangs)
    wire.connection.data_received(get("/one") + get("/two"))
    await entered.wait()
    assert await wire.in_flight.cut(5) == 1  # the shutdown deadline

    assert started == ["/one"]
    assert wire.transport.closed
    assert wire.answers() == []


# --- answers given at once -----------------------------------------------------------------------


def at_once(request: Request) -> Response:
    """A handler with its answer at hand (a cached object): no task, no wait."""
    return Response(200, {}, request.raw_path.encode())


async def test_an_answer_at_hand_is_written_before_the_next_bytes_are_read() -> None:
    wire = Wire(at_once)
    wire.connection.data_received(get("/one"))

    assert [body for _, body in wire.answers()] == [b"/one"]  # no loop turn in between
    assert len(wire.in_flight) == 0  # nor a task


async def test_answers_at_once_and_awaited_keep_the_order_of_their_requests() -> None:
    def mixed(request: Request) -> Response | Awaitable[Response]:
        if request.raw_path.startswith("/later"):
            return echo(request)
        return at_once(request)

    wire = Wire(mixed)
    await wire.send(get("/now1") + get("/later") + get("/now2") + get("/now3"))

    bodies = [body for _, body in wire.answers()]
    assert bodies[0] == b"/now1"
    assert json.loads(bodies[1])["target"] == "/later"
    assert bodies[2:] == [b"/now2", b"/now3"]


async def test_many_pipelined_answers_at_once_in_one_read_are_given_in_order() -> None:
    wire = Wire(at_once)
    await wire.send(b"".join(get(f"/{i}") for i in range(MAX_PIPELINED)))

    assert [body for _, body in wire.answers()] == [f"/{i}".encode() for i in range(MAX_PIPELINED)]
    assert not wire.transport.closed


async def test_more_heads_in_one_read_than_the_bound_are_refused_even_when_answered_at_once() -> (
    None
):
    wire = Wire(at_once)
    await wire.send(b"".join(get(f"/{i}") for i in range(MAX_PIPELINED + 1)))

    *given, (refused, _) = wire.answers()  # one read's work is bounded, however cheap
    assert [body for _, body in given] == [f"/{i}".encode() for i in range(MAX_PIPELINED)]
    assert (refused.status_code, wire.transport.closed) == (400, True)


async def test_a_request_with_a_body_is_answered_once_its_body_is_read() -> None:
    """Even an answer the handler has at hand (a refused upload): given at once, the body
    would be unread and the connection would have to close."""
    wire = Wire(at_once)
    await wire.send(put(b"tiny") + get("/next"))

    assert [body for _, body in wire.answers()] == [b"/up", b"/next"]
    assert not wire.transport.closed


async def test_bytes_after_an_answer_that_closed_are_neither_refused_nor_counted() -> None:
    refusals: list[int] = []
    wire = Wire(at_once)
    refuse = wire.server._refuse

    def counted(status: int) -> Response:
        refusals.append(status)
        return refuse(status)

    wire.server._refuse = counted
    await wire.send(get("/one", "Connection: close") + b"BAD\x01 / HTTP/1.1\r\n\r\n")

    assert [body for _, body in wire.answers()] == [b"/one"]
    assert (refusals, wire.transport.closed) == ([], True)


async def test_a_task_cut_before_its_first_step_ends_its_request_and_closes_its_handler() -> None:
    opened: list[str] = []
    returned: list[Coroutine[None, None, Response]] = []

    async def later(request: Request) -> Response:
        opened.append(request.raw_path)
        return Response(200, {}, b"never")

    def handler(request: Request) -> Awaitable[Response]:
        returned.append(later(request))
        return returned[-1]

    wire = Wire(handler)
    wire.connection.data_received(get("/one"))
    assert await wire.in_flight.cut(5) == 1  # in the loop turn that made its task

    assert (opened, wire.answers(), wire.transport.closed) == ([], [], True)
    assert not wire.connection._busy
    assert inspect.getcoroutinestate(returned[0]) == inspect.CORO_CLOSED  # never left unawaited


async def test_a_head_refused_after_an_answers_head_went_out_is_answered_after_it() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def streamed(request: Request) -> StreamResponse:
        response = StreamResponse(200, {"Content-Length": "5"})
        response.prepare(request)
        await response.write(b"01")  # its head says the connection stays open
        started.set()
        await release.wait()
        await response.write_eof(b"234")
        return response

    wire = Wire(streamed)
    wire.connection.data_received(get("/a"))
    await started.wait()
    wire.connection.data_received(b"BAD\x01 / HTTP/1.1\r\n\r\n")
    release.set()
    await wire.settled()

    (first, body), (refused, _) = wire.answers()
    assert (first.status_code, body, refused.status_code) == (200, b"01234", 400)
    assert wire.transport.closed


async def test_a_head_refused_before_the_answers_head_is_answered_by_its_closing() -> None:
    wire = Wire()  # echo: its answer is written after the whole read is parsed
    await wire.send(get("/a") + b"BAD\x01 / HTTP/1.1\r\n\r\n")

    ((first, _),) = wire.answers()
    assert (first.status_code, header(first, "Connection")) == (200, "close")
    assert wire.transport.closed


async def test_a_head_refused_while_an_answer_waits_for_the_client_is_answered_after_it() -> None:
    wire = Wire(at_once)
    wire.transport.full_after = 10
    wire.connection.data_received(get("/a") + b"BAD\x01 / HTTP/1.1\r\n\r\n")
    wire.connection.resume_writing()
    await wire.settled()

    (first, body), (refused, _) = wire.answers()
    assert (first.status_code, body, refused.status_code) == (200, b"/a", 400)
    assert wire.transport.closed


async def test_a_handler_that_fails_at_once_is_answered_500() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    wire = Wire(broken)
    await wire.send(get() + get())
    assert [r.status_code for r, _ in wire.answers()] == [500, 500]


async def test_after_an_answer_at_once_fills_the_buffer_the_next_waits_for_the_client() -> None:
    wire = Wire(at_once)
    wire.transport.full_after = 10
    wire.connection.data_received(get("/one") + get("/two"))

    assert (wire.connection.queued, [body for _, body in wire.answers()]) == (1, [b"/one"])
    wire.connection.resume_writing()
    await wire.settled()
    assert [body for _, body in wire.answers()] == [b"/one", b"/two"]


@pytest.mark.parametrize("handler", [at_once, echo], ids=["at-once", "awaited"])
async def test_an_upgrade_request_is_answered_as_it_is_and_its_connection_closed(
    handler: Handler,
) -> None:
    wire = Wire(handler)
    await wire.send(get("/a", "Connection: Upgrade", "Upgrade: h2c") + get("/after"))

    ((response, _),) = wire.answers()
    assert (response.status_code, header(response, "Connection")) == (200, "close")
    assert wire.transport.closed
