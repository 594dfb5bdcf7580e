"""What reaches the logs: never a token."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.observability.access_log import AccessLines, AccessRecord, configure, lines

SIGNATURE = "J-Qls98xSecretLookingSignatureValue"
TARGET = f"/a.txt?Expires=1&KeyID=k&Issued=0&Signature={SIGNATURE}"


def test_parser_errors_from_aiohttp_are_logged_without_the_query(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(enabled=True, level="INFO")
    try:
        raise ValueError(f"Bad status line 'GET {TARGET} HTTP/9.9x'")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request %s", TARGET)
    err = capsys.readouterr().err
    assert "Error handling request /a.txt?<redacted>" in err
    assert SIGNATURE not in err
    assert "Traceback" not in err


def test_access_lines_carry_the_path_but_never_a_query() -> None:
    record = AccessRecord(
        "GET",
        "/a.txt",
        "203.0.113.7",
        status=200,
        reason="ok",
        key_id="k",
        token_id="abc",
        sub="u1",
    )
    line = record.line()
    assert '"path":"/a.txt"' in line
    assert "?" not in line


def test_parser_errors_from_aiohttp_are_logged_without_a_path_form_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(enabled=True, level="INFO")
    target = f"/token={SIGNATURE}/hls/ep1/seg001.ts"
    logging.getLogger("aiohttp.server").warning("Error handling request %s", target)
    err = capsys.readouterr().err
    assert "Error handling request /token=<redacted>/hls/ep1/seg001.ts" in err
    assert SIGNATURE not in err


optional_text = st.none() | st.text()
counts = st.integers(min_value=0, max_value=2**63)


@given(
    st.builds(
        AccessRecord,
        method=st.text(),
        path=st.text(),
        client=optional_text,
        started=st.floats(allow_nan=False, allow_infinity=False),
        status=st.integers(min_value=0, max_value=999),
        reason=st.text(),
        sent=counts,
        received=counts,
        duration=st.floats(min_value=0, max_value=1e6),
        key_id=optional_text,
        sub=optional_text,
        token_id=optional_text,
        cache=optional_text,
    )
)
def test_an_access_line_is_the_json_of_its_fields(record: AccessRecord) -> None:
    line = record.line()
    expected = {
        "ts": json.loads(line)["ts"],
        "client": record.client,
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "reason": record.reason,
        "bytes": record.sent,
        "duration_ms": round(record.duration * 1000, 3),
    }
    if record.received:
        expected["received"] = record.received
    if record.key_id is not None:
        expected["key_id"] = record.key_id
        expected["token_id"] = record.token_id
    if record.sub is not None:
        expected["sub"] = record.sub
    if record.cache is not None:
        expected["cache"] = record.cache
    assert line == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))


def test_access_lines_go_one_a_line_to_stdout_while_enabled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(enabled=True, level="INFO")
    try:
        lines.write(AccessRecord("GET", "/a.txt", None, status=200, reason="ok"))
        lines.write(AccessRecord("GET", "/b.txt", None, status=403, reason="expired"))
    finally:
        configure(enabled=False, level="INFO")
    lines.write(AccessRecord("GET", "/c.txt", None, status=200, reason="ok"))  # off: nothing
    written = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["path"] for line in written] == ["/a.txt", "/b.txt"]


def test_a_failing_stdout_loses_the_line_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = io.StringIO()
    broken.close()
    monkeypatch.setattr("sys.stdout", broken)
    sink = AccessLines()
    sink.enabled = True
    sink.write(AccessRecord("GET", "/a.txt", None, status=200, reason="ok"))


class _CountingStream(io.StringIO):
    """An unbuffered stdout (`PYTHONUNBUFFERED`): it counts its writes, each a write(2)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _enabled_sink() -> AccessLines:
    sink = AccessLines()
    sink.enabled = True
    return sink


def _paths(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["path"] for line in stream.getvalue().splitlines()]


async def test_lines_of_one_loop_turn_share_one_write_at_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _CountingStream()
    monkeypatch.setattr("sys.stdout", stream)
    sink = _enabled_sink()
    for path in ("/a.txt", "/b.txt", "/c.txt"):
        sink.write(AccessRecord("GET", path, None, status=200, reason="ok"))
    assert stream.writes == 0  # not one write per line...
    await asyncio.sleep(0)  # ...but one when the turn ends
    assert stream.writes == 1
    assert _paths(stream) == ["/a.txt", "/b.txt", "/c.txt"]


def test_outside_an_event_loop_a_line_is_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _CountingStream()
    monkeypatch.setattr("sys.stdout", stream)
    _enabled_sink().write(AccessRecord("GET", "/a.txt", None, status=200, reason="ok"))
    assert _paths(stream) == ["/a.txt"]


async def test_a_replaced_stdout_gets_the_old_ones_lines_written_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _CountingStream(), _CountingStream()
    sink = _enabled_sink()
    monkeypatch.setattr("sys.stdout", first)
    sink.write(AccessRecord("GET", "/a.txt", None, status=200, reason="ok"))
    monkeypatch.setattr("sys.stdout", second)
    sink.write(AccessRecord("GET", "/b.txt", None, status=200, reason="ok"))
    assert _paths(first) == ["/a.txt"]  # before the line that went to the new stdout
    await asyncio.sleep(0)
    assert _paths(second) == ["/b.txt"]


async def test_an_explicit_flush_writes_what_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _CountingStream()
    monkeypatch.setattr("sys.stdout", stream)
    sink = _enabled_sink()
    sink.write(AccessRecord("GET", "/a.txt", None, status=200, reason="ok"))
    sink.flush()  # as `gateway serve` does when its loop stops
    assert _paths(stream) == ["/a.txt"]
    await asyncio.sleep(0)  # the turn's own flush finds nothing more
    assert stream.writes == 1
