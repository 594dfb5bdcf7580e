"""AWS Signature Version 4 for the gateway's own S3 GET and HEAD requests.

Why not botocore's `S3SigV4Auth`: profiled on the request path it was the largest single cost of
a small-object request (it builds email-style header objects and re-parses the URL each call).
This signs the one shape the data path sends (no query, no body: the payload hash is that of
the empty string). What does not change from request to request is done once: the signing key
and its HMAC pads once per day (`signer.algorithms.HmacSha256`), the `X-Amz-Date` once per
second. `tests/unit/test_sigv4.py` proves the output identical to botocore's for the same
inputs, so correctness rests on botocore's implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from hashlib import sha256
from typing import Final, NamedTuple

from signer.algorithms import HmacSha256

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_PAYLOAD = hashlib.sha256(b"").hexdigest()  # GET and HEAD carry no body
_SIGNED: Final = "host;x-amz-content-sha256;x-amz-date"  # SignedHeaders without extra headers
_SIGNED_WITH_TOKEN: Final = _SIGNED + ";x-amz-security-token"
_CONTENT_SHA256_LINE: Final = f"X-Amz-Content-SHA256: {EMPTY_PAYLOAD}\r\n"


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None


class SigV4Signer:
    def __init__(self, region: str, service: str = "s3") -> None:
        self._region = region
        self._service = service
        self._scope = f"/{region}/{service}/aws4_request"  # after the date
        self._key_cache: tuple[str, str, HmacSha256] | None = None  # (secret, date, HMAC)
        self._date_cache: tuple[int, str] = (-1, "")  # (unix second, its X-Amz-Date)

    def request_head(
        self,
        method: str,
        host: str,
        raw_path: str,
        credentials: Credentials,
        extra: dict[str, str],
        *,
        now: float | None = None,
    ) -> bytes:
        """The signed request's head as it goes on the wire: `extra`, the signed x-amz-* headers
        and Authorization, then `Host`. Written out in one string rather than through a dict
        of headers (measured, a whole-object GET: 3.2 µs through a dict, 2.4 µs this way)."""
        amz_date, authorization = self._sign(method, host, raw_path, credentials, extra, now)
        given = "".join([f"{name}: {value}\r\n" for name, value in extra.items()]) if extra else ""
        signed = f"{_CONTENT_SHA256_LINE}X-Amz-Date: {amz_date}\r\n"
        if credentials.token:
            signed += f"X-Amz-Security-Token: {credentials.token}\r\n"
        return (
            f"{method} {raw_path} HTTP/1.1\r\n{given}{signed}"
            f"Authorization: {authorization}\r\nHost: {host}\r\n\r\n"
        ).encode("latin-1")

    def _sign(
        self,
        method: str,
        host: str,
        raw_path: str,
        credentials: Credentials,
        extra: dict[str, str],
        now: float | None,
    ) -> tuple[str, str]:
        """(X-Amz-Date, Authorization) for the request."""
        amz_date = self._amz_date(int(time.time() if now is None else now))
        date = amz_date[:8]
        token = credentials.token
        if not extra:  # a whole-object GET or a HEAD: the same names every time, already in order
            canonical_headers = (
                f"host:{host}\nx-amz-content-sha256:{EMPTY_PAYLOAD}\nx-amz-date:{amz_date}\n"
            )
            if token:
                canonical_headers += f"x-amz-security-token:{token}\n"
            signed_headers = _SIGNED_WITH_TOKEN if token else _SIGNED
        elif (only := _one_between(extra)) is not None:
            # a slice's or a client's Range (the cache's every miss sends one), a revalidation's
            # If-None-Match
            name, value = only
            canonical_headers = (
                f"host:{host}\n{name}:{value}\nx-amz-content-sha256:{EMPTY_PAYLOAD}\n"
                f"x-amz-date:{amz_date}\n"
            )
            signed_headers = f"host;{name};x-amz-content-sha256;x-amz-date"
            if token:
                canonical_headers += f"x-amz-security-token:{token}\n"
                signed_headers += ";x-amz-security-token"
        else:
            signed = {k.lower(): " ".join(v.split()) for k, v in extra.items()}
            signed["host"] = host
            signed["x-amz-content-sha256"] = EMPTY_PAYLOAD
            signed["x-amz-date"] = amz_date
            if token:
                signed["x-amz-security-token"] = token
            names = sorted(signed)
            signed_headers = ";".join(names)
            canonical_headers = "".join([f"{name}:{signed[name]}\n" for name in names])
        canonical = (
            f"{method}\n{raw_path}\n\n{canonical_headers}\n{signed_headers}\n{EMPTY_PAYLOAD}"
        )
        scope = date + self._scope
        string_to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n{sha256(canonical.encode()).hexdigest()}"
        )
        signature = self._signing_hmac(credentials.secret_key, date).hexdigest(
            string_to_sign.encode()
        )
        return amz_date, (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )

    def _amz_date(self, second: int) -> str:
        cached = self._date_cache
        if cached[0] == second:
            return cached[1]
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        self._date_cache = (second, amz_date)
        return amz_date

    def _signing_hmac(self, secret: str, date: str) -> HmacSha256:
        cached = self._key_cache
        if cached is not None and cached[0] == secret and cached[1] == date:
            return cached[2]
        key = ("AWS4" + secret).encode()
        for part in (date, self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signing = HmacSha256(key)
        self._key_cache = (secret, date, signing)
        return signing


def _one_between(extra: dict[str, str]) -> tuple[str, str] | None:
    """(name, value) as signed, when `extra` is one header whose name sorts between `host` and
    the x-amz-* ones (`range`, `if-none-match`): its canonical headers are then known in order,
    without sorting them."""
    if len(extra) != 1:
        return None
    ((name, value),) = extra.items()
    lowered = name.lower()
    if not "host" < lowered < "x-amz-content-sha256":
        return None
    return lowered, " ".join(value.split())
