"""Every error the gateway answers, mapped to HTTP in one place.

Clients get a short, stable code in a JSON body (`{"error": "expired"}`): never a stack trace,
never the storage's XML. The same code is the `reason` in logs and metrics.
"""

from __future__ import annotations

from aiohttp import web

from gateway.http.ranges import unsatisfiable_content_range
from gateway.storage import (
    AlreadyExists,
    NotFound,
    OriginError,
    OriginTimeout,
    RangeNotSatisfiable,
    StorageError,
)
from signer import Reason

NO_STORE = "no-store"


def error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(
        status=status,
        body=b'{"error":"%s"}\n' % code.encode("ascii"),
        content_type="application/json",
    )
    response.headers["Cache-Control"] = NO_STORE
    if headers:
        response.headers.update(headers)
    return response


def rejected(reason: Reason) -> web.Response:
    return error(403, reason.value)


def lifetime_exceeded() -> web.Response:
    """An authentic link living longer than `max_link_lifetime`: refused, because revocations
    are only kept that long."""
    return error(403, "lifetime_exceeded")


def method_not_allowed(allowed: str) -> web.Response:
    return error(405, "method_not_allowed", {"Allow": allowed})


def cors_refused() -> web.Response:
    """A preflight for an origin, method or header that the CORS policy does not allow."""
    return error(403, "cors_refused")


def invalid_path() -> web.Response:
    return error(400, "invalid_path")


def storage_failure(exc: StorageError) -> tuple[web.Response, str]:
    """The response and the reason code for a storage error raised before streaming began."""
    if isinstance(exc, NotFound):
        return error(404, "not_found"), "not_found"
    if isinstance(exc, RangeNotSatisfiable):
        headers = {"Content-Range": unsatisfiable_content_range(exc.size)}
        return error(416, "range_not_satisfiable", headers), "range_not_satisfiable"
    if isinstance(exc, AlreadyExists):
        return error(412, "object_exists"), "object_exists"
    if isinstance(exc, OriginTimeout):
        return error(504, "origin_timeout"), "origin_timeout"
    if isinstance(exc, OriginError):
        return error(502, "origin_error"), "origin_error"
    return error(502, "origin_error"), "origin_error"
