"""Structured access logs: one JSON line per request, with the token removed.

The logged path is the raw path only: the query string (where the token and its signature
live) is never logged, and every path segment that reads `token=` (in any case, as the path form
or not) has its value replaced by `<redacted>` (`signer.format.strip_path_token`). Cookies
are never logged. The key id, subject and token id are logged only from tokens whose
signature was authentic, so a forger cannot write chosen text into the logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.observability.redaction import RedactRequestData

log = logging.getLogger("gateway.access")

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
        record = {
            "ts": round(time.time(), 3),
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "bytes": self.sent,
            "duration_ms": round(self.duration * 1000, 3),
        }
        if self.received:
            record["received"] = self.received
        if self.key_id is not None:
            record["key_id"] = self.key_id
            record["token_id"] = self.token_id
        if self.sub is not None:
            record["sub"] = self.sub
        if self.cache is not None:
            record["cache"] = self.cache
        if self.scheme is not None:
            record["scheme"] = self.scheme
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


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
    """Access lines go to stdout as bare JSON; everything else to stderr with a prefix, with
    request data redacted from aiohttp's records and the AWS SDK's loggers held at WARNING."""
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
    log.propagate = False
    log.handlers.clear()
    if enabled:
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(out)
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.CRITICAL + 1)
