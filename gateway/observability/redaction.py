"""What must never reach a log, removed in one place for each way it could get there.

* aiohttp logs requests its parser refused together with the exception, whose message quotes
  the offending line: a request line with its signed query (spaces and quotes included), or a
  header line with its value (a token cookie, a bearer token; or the first 100 bytes of an
  over-long line). `RedactRequestData` keeps the parser's fixed reason and drops the quote.
* A store URL may carry a password, in the userinfo or as redis-py's `password=` parameter:
  `redact_url` is what every log line that names a store prints.
"""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import unquote

from aiohttp.http_exceptions import HttpProcessingError

from signer.format import strip_path_token

#: From a `?` to the end of the line: a request line that failed to parse may hold spaces and
#: quotes inside its query, so no shorter end is safe.
_QUERY: Final = re.compile(r"\?[^\n]*")
#: A path within a line of text, for `strip_path_token`.
_PATH: Final = re.compile(r"/[^\s'\"]*")
#: The parser's own words before it quotes the input: "Invalid header value char:\n\n  b'...'",
#: "Got more than 8190 bytes when reading: b'...'", "Bad status line:\n ...".
_REASON: Final = re.compile(r"[A-Z][A-Za-z0-9 ]{0,79}(?=:)")
_FIRST_LINE_LIMIT: Final = 200
#: Query parameters that carry a password: redis-py's, and a Sentinel URL's for the sentinels.
PASSWORD_PARAMETERS: Final = frozenset({"password", "sentinel_password"})
#: One `name=value` query parameter (redis-py splits its query on `&` only).
_PARAMETER: Final = re.compile(r"([?&])([^&=]*)=([^&]*)")


def redact_text(text: str) -> str:
    """`text` with every query, and the value of every `token=` path segment, redacted."""
    return _PATH.sub(lambda path: strip_path_token(path.group()), _QUERY.sub("?<redacted>", text))


def describe_error(exc: BaseException) -> str:
    """An exception for a log line. For aiohttp's HTTP errors: its type, status and the
    parser's fixed reason, never the message (it quotes the input). For anything else: its
    type and the first line of its message, redacted."""
    name = type(exc).__name__
    if isinstance(exc, HttpProcessingError):
        found = _REASON.match(exc.message) if isinstance(exc.message, str) else None
        return f"{name} ({exc.code}{': ' + found.group() if found else ''})"
    first = str(exc).partition("\n")[0][:_FIRST_LINE_LIMIT]
    return f"{name}: {redact_text(first)}" if first else name


class RedactRequestData(logging.Filter):
    """For aiohttp's loggers: the record's text redacted, its exception reduced to
    `describe_error`, and no traceback (a traceback's last line repeats the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call must not lose the record, nor raise here
            message = str(record.msg)
        message = redact_text(message)
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {describe_error(record.exc_info[1])}"
        record.msg = message
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def redact_url(url: str) -> str:
    """`url` fit for a log line: the value of every `password` or `sentinel_password` query
    parameter (in any case, percent-encoded or not) and the userinfo (`user:password@`) become
    `***`.

    Cut generously, since a password may hold a raw `/`, `?`, `#` or `@` that a URL parser
    would split on: parameters first, then everything up to the last `@` left is userinfo.
    """
    url = _PARAMETER.sub(_hide_password, url)
    at = url.rfind("@")
    if at < 0:
        return url
    start = url.find("://")
    start = 0 if start < 0 or start > at else start + 3
    return f"{url[:start]}***{url[at:]}"


def _hide_password(match: re.Match[str]) -> str:
    if unquote(match.group(2)).strip().lower() not in PASSWORD_PARAMETERS:
        return match.group()
    return f"{match.group(1)}{match.group(2)}=***"
