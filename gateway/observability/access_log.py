"""Structured access logs: one JSON line per request, with the token removed.

The logged path is the raw path only: the query string (where the token and its signature
live) is never logged, and every path segment that reads `token=` (in any case, as the path form
or not) has its value replaced by `<redacted>` (`signer.format.strip_path_token`). Cookies
are never logged. The key id, subject and token id are logged only from tokens whose
signature was authentic, so a forger cannot write chosen text into the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, Final, TextIO

from gateway.observability.redaction import RedactRequestData

#: aiohttp's loggers: the one that records refused requests (`aiohttp.server`) serves both
#: listeners; the others may quote a request line too.
AIOHTTP_LOGGERS: Final = (
    "aiohttp.access",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
)
#: At DEBUG these log every request they send with its headers: SigV4 `Authorization`,
#: `x-amz-security-token`, the string to sign. They stay at WARNING (or the gateway's level when
#: that is higher).
PINNED_AT_WARNING: Final = ("botocore", "aiobotocore", "urllib3")


@dataclass(slots=True)
class AccessRecord:
    method: str
    path: str
    client: str | None
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    reason: str = ""
    sent: int = 0
    received: int = 0
    duration: float = 0.0
    key_id: str | None = None
    sub: str | None = None
    token_id: str | None = None
    cache: str | None = None  # hit, miss, revalidated, stale, bypass (with the cache on)
    scheme: str | None = None  # whose link: edge (our token) or a `signer.schemes` name

    def line(self) -> str:
        """The record as one compact JSON object, written out field by field: `json.dumps` of
        a dict took twice as long for the same text (`tests/unit/test_access_log.py` compares
        the two for any record)."""
        client = "null" if self.client is None else encode_basestring(self.client)
        text = (
            f'{{"ts":{round(time.time(), 3)!r},"client":{client},'
            f'"method":{encode_basestring(self.method)},"path":{encode_basestring(self.path)},'
            f'"status":{self.status:d},"reason":{encode_basestring(self.reason)},'
            f'"bytes":{self.sent:d},"duration_ms":{round(self.duration * 1000, 3)!r}'
        )
        if self.received:
            text += f',"received":{self.received:d}'
        if self.key_id is not None:
            token_id = "null" if self.token_id is None else encode_basestring(self.token_id)
            text += f',"key_id":{encode_basestring(self.key_id)},"token_id":{token_id}'
        if self.sub is not None:
            text += f',"sub":{encode_basestring(self.sub)}'
        if self.cache is not None:
            text += f',"cache":{encode_basestring(self.cache)}'
        if self.scheme is not None:
            text += f',"scheme":{encode_basestring(self.scheme)}'
        return text + "}"


class AccessLines:
    """Where access lines go: to whatever `sys.stdout` is now (like `_Stderr`), without the
    `logging` machinery (a record object, caller lookup, handler lock, formatter: most of the
    cost of a line). Lines are written once per turn of the event loop, not once per line:
    every request that ends in the same turn shares one write(2), as with nginx's
    `access_log buffer=`, and no line waits past the turn it was made in (outside a loop, a
    line is written at once). The lines are held here, not in the stream's buffer, which an
    unbuffered stdout (`PYTHONUNBUFFERED`, as containers set it) does not have. A stream
    that fails (closed, full) or is missing loses the lines; it never fails a request."""

    __slots__ = ("_held", "_stream", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self._held: list[str] = []  # lines for `_stream`, written at the end of the turn
        self._stream: TextIO | None = None

    def write(self, record: AccessRecord) -> None:
        if not self.enabled:
            return
        stream = sys.stdout
        if stream is None:  # started without a stdout
            return
        if self._held:
            if stream is self._stream:
                self._held.append(record.line())
                return
            self.flush()  # stdout was replaced: the old one's lines go out first
        self._held.append(record.line())
        self._stream = stream
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write and flush the lines held since the last flush."""
        held, stream = self._held, self._stream
        if not held or stream is None:
            return
        self._held, self._stream = [], None
        with contextlib.suppress(OSError, ValueError):  # ValueError: the stream was closed
            stream.write("\n".join(held) + "\n")
            stream.flush()


lines: Final = AccessLines()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is now, not what it was when logging was configured: a
    closed stale stream would make `logging` print the failed record and the exception being
    handled (which may quote a request line) through its own error path."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(enabled: bool, level: str) -> None:
    """Access lines go to stdout as bare JSON (`lines`); everything else to stderr with a
    prefix, with request data redacted from aiohttp's records and the AWS SDK's loggers held at
    WARNING."""
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_gateway", False) for h in root.handlers):
        errors = _Stderr()
        errors.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        errors._gateway = True  # type: ignore[attr-defined]
        root.addHandler(errors)
    for name in AIOHTTP_LOGGERS:
        noisy = logging.getLogger(name)
        if not any(isinstance(f, RedactRequestData) for f in noisy.filters):
            noisy.addFilter(RedactRequestData())
    for name in PINNED_AT_WARNING:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    lines.enabled = enabled
