"""What reaches the logs: never a token."""

from __future__ import annotations

import logging

import pytest

from gateway.observability.access_log import AccessRecord, configure

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
