"""What the redaction helpers leave of a refused request and of a store URL: never a secret."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParserC, HttpRequestParserPy
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.observability.access_log import AIOHTTP_LOGGERS, PINNED_AT_WARNING, configure
from gateway.observability.redaction import RedactRequestData, describe_error, redact_url

SECRET = "Zq7sSecretValue_-that-must-not-be-logged"
PAD = b"x" * 9000

# Requests aiohttp's parsers refuse, each quoting SECRET in the exception's message.
REFUSED = {
    "a space in the query": b"GET /a?t=My Video&Signature=" + SECRET.encode() + b" HTTP/1.1\r\n",
    "a quote in the query": b'GET /a?t="x" y&Signature=' + SECRET.encode() + b" HTTP/1.1\r\n",
    "a control character in a cookie": b"GET / HTTP/1.1\r\nCookie: EdgeToken="
    + SECRET.encode()
    + b"\x01\r\n",
    "an over-long cookie": b"GET / HTTP/1.1\r\nCookie: s=" + SECRET.encode() + PAD + b"\r\n",
    "an over-long bearer": b"GET / HTTP/1.1\r\nAuthorization: Bearer "
    + SECRET.encode()
    + PAD
    + b"\r\n",
    "a target that is not a path": b"GET a?Signature=" + SECRET.encode() + b" HTTP/1.1\r\n",
    "a control character in the path": b"GET /a\x01?Signature="
    + SECRET.encode()
    + b" HTTP/1.1\r\n",
}
PARSERS = {"llhttp": HttpRequestParserC, "python": HttpRequestParserPy}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def refusal(parser: str, data: bytes, loop: asyncio.AbstractEventLoop) -> BaseException:
    """The exception aiohttp's parser raises for `data`, as the server would log it."""
    instance = PARSERS[parser](None, loop, 2**16, max_line_size=8190, max_field_size=8190)
    with pytest.raises(HttpProcessingError) as caught:
        instance.feed_data(data + b"Host: gw\r\n\r\n")
    assert SECRET[:16] in str(caught.value), "the parser no longer quotes its input"
    return caught.value


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize("name", list(REFUSED))
def test_a_parser_error_is_described_without_its_input(
    name: str, parser: str, loop: asyncio.AbstractEventLoop
) -> None:
    described = describe_error(refusal(parser, REFUSED[name], loop))
    assert described.startswith(type(refusal(parser, REFUSED[name], loop)).__name__ + " (400")
    assert SECRET[:8] not in described


@pytest.mark.parametrize(
    ("data", "described"),
    [
        (b"GET / HTTP/1.1\r\nCookie: a\x01\r\n", "BadHttpMessage (400: Invalid header value char)"),
        (b"GET / HTTP/1.1\r\nCookie: " + PAD + b"\r\n", "LineTooLong (400: Got more than 8190"),
    ],
)
def test_a_parser_error_keeps_the_parsers_fixed_reason(
    data: bytes, described: str, loop: asyncio.AbstractEventLoop
) -> None:
    instance = HttpRequestParserC(None, loop, 2**16, max_line_size=8190, max_field_size=8190)
    with pytest.raises(HttpProcessingError) as caught:
        instance.feed_data(data + b"\r\n")
    assert describe_error(caught.value).startswith(described)


def test_other_exceptions_keep_the_first_line_of_their_message_redacted() -> None:
    error = ValueError(f"bad /a?Signature={SECRET} and /token={SECRET}/b\nsecond {SECRET}")
    assert describe_error(error) == "ValueError: bad /a?<redacted>"
    assert describe_error(KeyError()) == "KeyError"


def test_the_filter_drops_the_traceback_and_keeps_the_record(
    loop: asyncio.AbstractEventLoop,
) -> None:
    exc = refusal("llhttp", REFUSED["a control character in a cookie"], loop)
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
        ("203.0.113.7",), (type(exc), exc, exc.__traceback__),
    )  # fmt: skip
    assert RedactRequestData().filter(record)
    assert record.getMessage() == (
        "Error handling request from 203.0.113.7: BadHttpMessage (400: Invalid header value char)"
    )
    assert (record.exc_info, record.exc_text, record.stack_info) == (None, None, None)


@pytest.mark.parametrize(
    ("message", "logged"),
    [
        ('"GET /a?x=1 y&Signature=S HTTP/1.1" 400', '"GET /a?<redacted>'),
        ("GET /TOKEN=abc/b.ts", "GET /TOKEN=<redacted>/b.ts"),
        ("GET /token=a/token=b/c", "GET /token=<redacted>/token=<redacted>/c"),
        ("GET /tok%65n%3Dabc/c", "GET /tok%65n%3D<redacted>/c"),
        ("GET /videos/tokens/a.ts", "GET /videos/tokens/a.ts"),
    ],
)
def test_the_filter_redacts_queries_and_token_segments_from_the_text(
    message: str, logged: str
) -> None:
    record = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1, message, (), None)
    RedactRequestData().filter(record)
    assert record.getMessage() == logged


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_the_aws_sdk_loggers_stay_at_warning_whatever_the_level(level: str) -> None:
    configure(enabled=False, level=level)
    for name in PINNED_AT_WARNING:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
    assert not logging.getLogger("botocore.endpoint").isEnabledFor(logging.DEBUG)


def test_the_aws_sdk_loggers_follow_a_level_above_warning() -> None:
    configure(enabled=False, level="ERROR")
    assert logging.getLogger("botocore").getEffectiveLevel() == logging.ERROR
    configure(enabled=False, level="INFO")  # as the other tests expect it


def test_every_aiohttp_logger_gets_the_filter_once() -> None:
    configure(enabled=False, level="INFO")
    configure(enabled=False, level="INFO")
    for name in AIOHTTP_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactRequestData) for f in filters) == 1


# -- store URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6379/0", "redis://***@host:6379/0"),
        ("redis://default:pw@host/0", "redis://***@host/0"),
        ("rediss://u:p@ss@host/0", "rediss://***@host/0"),
        ("redis://host/0?password=pw", "redis://host/0?password=***"),
        ("redis://host/0?db=1&password=pw&x=1", "redis://host/0?db=1&password=***&x=1"),
        ("redis://host?Password=pw", "redis://host?Password=***"),
        ("redis://host/0?pass%77ord=pw", "redis://host/0?pass%77ord=***"),
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
        ("redis://:p/w?x@host/0", "redis://***@host/0"),
        ("redis://host/0?password=a@b&db=1", "redis://host/0?password=***&db=1"),
        (
            "redis+sentinel://:pw@h1:26379,h2:26379/m/0",
            "redis+sentinel://***@h1:26379,h2:26379/m/0",
        ),
        (
            "redis+sentinel://h1,h2/m?sentinel_password=pw",
            "redis+sentinel://h1,h2/m?sentinel_password=***",
        ),
        (
            "redis+sentinel://h/m?password=a&Sentinel_Password=b",
            "redis+sentinel://h/m?password=***&Sentinel_Password=***",
        ),
    ],
)
def test_a_store_url_is_logged_without_its_password(url: str, logged: str) -> None:
    assert redact_url(url) == logged


TEMPLATES = [
    "redis://:{}@host:6379/0",
    "redis://user:{}@host:6379/0",
    "redis://host:6379/0?password={}",
    "redis://host:6379/0?db=0&password={}&socket_timeout=5",
    "unix:///run/redis.sock?password={}",
    "redis+sentinel://:{}@h1:26379,h2:26379,h3:26379/mymaster/0",
    "redis+sentinel://h1:26379,h2:26379/mymaster/0?password=x&sentinel_password={}",
]


@pytest.mark.parametrize("template", TEMPLATES)
@given(st.text(st.characters(blacklist_characters="&", codec="utf-8"), min_size=4))
def test_no_password_survives_redaction(template: str, password: str) -> None:
    assume(password not in template.format(""))
    assert password not in redact_url(template.format(password))
