"""Every refusal the gateway answers, and the one place each becomes an HTTP response.

    Refused(Refusal.X)      the gateway's own refusals: the catalogue below (status, code)
    signer.Rejected         a link that does not verify: 403 with its `signer.Reason`
    StorageError            storage said no or failed before any byte was sent (404 ... 504)

Code raises one of these; `answer()` turns it into the response, and the pipeline records its
status and code once (access log and metrics). Clients get a short, stable code in a JSON body
(`{"error": "expired"}`): never a stack trace, never the storage's XML. The same code is the
`reason` in logs and metrics, and `REASONS` is the closed set of them that a test enumerates.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Final

from gateway.http.ranges import unsatisfiable_content_range
from gateway.http_server import Response
from gateway.storage import (
    AlreadyExists,
    InvalidObjectKey,
    NotFound,
    OriginTimeout,
    RangeNotSatisfiable,
    StorageError,
)
from signer import Reason, Rejected
from signer.format import METHODS

NO_STORE: Final = "no-store"


class Refusal(enum.Enum):
    """The catalogue: each refusal's status and code (and headers that never vary)."""

    def __init__(self, status: int, code: str, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.headers: Mapping[str, str] = headers or {}

    # the request head, refused by the server before the pipeline (gateway.http_server)
    BAD_REQUEST = (400, "bad_request")  # framing the parser cannot read
    URI_TOO_LONG = (414, "uri_too_long")
    HEADER_FIELDS_TOO_LARGE = (431, "header_fields_too_large")
    INTERNAL_ERROR = (500, "internal_error")  # a bug: logged with its traceback
    # the request itself
    METHOD_NOT_ALLOWED = (405, "method_not_allowed", {"Allow": ", ".join(METHODS)})
    EXPECTATION_FAILED = (417, "expectation_failed")
    CORS_REFUSED = (403, "cors_refused")  # a preflight the CORS policy does not allow
    INVALID_PATH = (400, "invalid_path")  # no valid object key
    AMBIGUOUS_LINK = (403, "ambiguous_link")  # links of two schemes at once (signer.schemes)
    # an authentic link the gateway still refuses
    WRONG_BUCKET = (403, "wrong_bucket")  # a path-style link for a bucket other than the origin's
    REVOCATION_STORE_UNAVAILABLE = (503, "revocation_store_unavailable")
    # the revocation list is not loaded yet (Redis down at start, no snapshot): fail closed
    REVOCATIONS_UNAVAILABLE = (503, "revocations_unavailable")
    # usage limits a link carries (gateway.limits): judged before the head
    TOO_MANY_STREAMS = (429, "too_many_streams")
    USES_EXHAUSTED = (403, "uses_exhausted")
    BYTES_EXHAUSTED = (403, "bytes_exhausted")
    LIMITS_UNAVAILABLE = (503, "limits_unavailable")  # the limit store is down: fail closed
    # the object and its preconditions
    NOT_FOUND = (404, "not_found")
    PRECONDITION_FAILED = (412, "precondition_failed")
    RANGE_NOT_SATISFIABLE = (416, "range_not_satisfiable")
    ORIGIN_ERROR = (502, "origin_error")
    ORIGIN_TIMEOUT = (504, "origin_timeout")
    # uploads
    LENGTH_REQUIRED = (411, "length_required")
    TOO_LARGE = (413, "too_large")
    TOO_SMALL = (400, "too_small")
    UNSUPPORTED_MEDIA_TYPE = (415, "unsupported_media_type")
    UNSUPPORTED_CONTENT_ENCODING = (415, "unsupported_content_encoding")
    OBJECT_EXISTS = (412, "object_exists")
    UPLOAD_IN_PROGRESS = (409, "upload_in_progress")  # another no-overwrite upload of the key
    TOKEN_IN_USE = (409, "token_in_use")  # another upload holds this one-time link
    BODY_TIMEOUT = (408, "body_timeout")
    CLIENT_DISCONNECTED = (400, "client_disconnected")  # sent to nobody; logged
    SHUTDOWN = (503, "shutdown")  # the shutdown deadline cut the upload (sent to nobody)
    CANCELLED = (503, "cancelled")  # cancelled otherwise (neither the client nor the deadline)
    # S3 presigned POST form uploads (gateway/form_upload.py)
    INVALID_FORM = (400, "invalid_form")  # not multipart/form-data the gateway can read
    FORM_FIELDS_TOO_LARGE = (400, "form_fields_too_large")  # the fields before the file
    POLICY_CONDITION_FAILED = (403, "policy_condition_failed")  # the signed policy says no
    # the admin API
    UNAUTHORIZED = (401, "unauthorized", {"WWW-Authenticate": "Bearer"})
    BODY_TOO_LARGE = (413, "body_too_large")
    INVALID_JSON = (400, "invalid_json")
    INVALID_REQUEST = (400, "invalid_request")
    STORE_UNAVAILABLE = (503, "store_unavailable")


class Outcome(enum.StrEnum):
    """Reasons recorded for requests that were not refused (or whose answer was already sent)."""

    OK = "ok"
    PREFLIGHT = "preflight"
    NOT_MODIFIED = "not_modified"
    ORIGIN_ABORTED = "origin_aborted"  # storage failed after the headers went out
    CLIENT_DISCONNECTED = "client_disconnected"
    SEND_TIMEOUT = "send_timeout"  # the client took no bytes for send_timeout: connection closed
    SHUTDOWN = "shutdown"  # the shutdown deadline cut the stream
    CANCELLED = "cancelled"


#: Every `reason` a request can be recorded with: the closed set of the metric label.
REASONS: Final = frozenset(
    {o.value for o in Outcome} | {r.code for r in Refusal} | {r.value for r in Reason}
)


class Refused(Exception):
    """Raise to refuse a request with a catalogue entry; `detail` goes to the client too, so
    it must never hold a secret (the admin API's validation messages)."""

    def __init__(
        self,
        refusal: Refusal,
        *,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(refusal.code if detail is None else f"{refusal.code}: {detail}")
        self.refusal = refusal
        self.detail = detail
        self.headers = headers


def refusal_for(exc: Refused | Rejected | StorageError) -> tuple[int, str]:
    """The status and code an exception is answered with (no response built)."""
    if isinstance(exc, Refused):
        return exc.refusal.status, exc.refusal.code
    if isinstance(exc, Rejected):
        return 403, exc.reason.value
    refusal = _storage_refusal(exc)
    return refusal.status, refusal.code


def answer(exc: Refused | Rejected | StorageError, detail: str | None = None) -> Response:
    """The response for a refusal: the one place a status and an error code are chosen.
    `detail` (a link scheme's own words for the refusal, `signer.schemes`) goes in the body
    unless the refusal has one of its own."""
    if isinstance(exc, Refused):
        headers = {**exc.refusal.headers, **(exc.headers or {})}
        return error_response(exc.refusal.status, exc.refusal.code, headers, exc.detail or detail)
    if isinstance(exc, Rejected):
        return error_response(403, exc.reason.value, detail=detail)
    refusal = _storage_refusal(exc)
    headers = {}
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = unsatisfiable_content_range(exc.size)
    return error_response(refusal.status, refusal.code, headers, detail)


def error_response(
    status: int, code: str, headers: Mapping[str, str] | None = None, detail: str | None = None
) -> Response:
    body: dict[str, str] = {"error": code}
    if detail is not None:
        body["detail"] = detail
    return Response(
        status,
        {"Content-Type": "application/json", "Cache-Control": NO_STORE, **(headers or {})},
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n",
    )


#: What the server answers a head it refused with, by status (`gateway.http_server`).
HEAD_REFUSALS: Final = {
    r.status: r
    for r in (
        Refusal.BAD_REQUEST,
        Refusal.URI_TOO_LONG,
        Refusal.HEADER_FIELDS_TOO_LARGE,
        Refusal.INTERNAL_ERROR,
    )
}


def _storage_refusal(exc: StorageError) -> Refusal:
    if isinstance(exc, NotFound):
        return Refusal.NOT_FOUND
    if isinstance(exc, RangeNotSatisfiable):
        return Refusal.RANGE_NOT_SATISFIABLE
    if isinstance(exc, AlreadyExists):
        return Refusal.OBJECT_EXISTS
    if isinstance(exc, InvalidObjectKey):
        return Refusal.INVALID_PATH
    if isinstance(exc, OriginTimeout):
        return Refusal.ORIGIN_TIMEOUT
    return Refusal.ORIGIN_ERROR
