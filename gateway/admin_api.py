"""The operators' HTTP API, mounted on the admin listener only (never the public port).

    POST /admin/revocations      {"sub": "user-42"} | {"url": ...} | {"digest": ...}
                                 | {"key_id": ...} | {"prefix": ..., "before": unix seconds}
    GET  /admin/revocations      the live entries
    POST /admin/keyring/reload   reload the keyring now

Every call needs `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`, compared in constant time.
Without a configured token the routes do not exist (404): disabled, never open.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.revocation import Revocation, RevocationError, RevocationStore, from_request
from gateway.revocation.entries import REQUEST_KINDS

log = logging.getLogger("gateway.admin")

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class AdminActions:
    store: Callable[[], RevocationStore]  # a getter: the store opens after the admin app exists
    max_lifetime: float
    skew: float
    reload_keyring: Callable[[], Awaitable[tuple[int, str]]]  # -> (HTTP status, message)
    on_revoked: Callable[[Revocation], None] = lambda entry: None


def add_admin_api(app: web.Application, token: str | None, actions: AdminActions) -> None:
    if not token:
        return
    expected = token.encode()

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/admin/"):
            return await handler(request)  # type: ignore[no-any-return]
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # aiohttp decodes header bytes with surrogateescape: encode them back the same way.
        given_bytes = given.encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, expected):
            log.warning(
                "admin API: refused %s %s (bad or missing bearer token)",
                request.method,
                request.path,
            )
            return _json(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})
        return await handler(request)  # type: ignore[no-any-return]

    async def revoke(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _json(413, {"error": "body_too_large"})
        raw = bytearray()
        while len(raw) <= MAX_BODY:  # read(n) returns what has arrived so far, not n bytes
            chunk = await request.content.read(MAX_BODY + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        if len(raw) > MAX_BODY:
            return _json(413, {"error": "body_too_large"})
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            detail = "the body is not JSON (UTF-8)"
            return _json(400, {"error": "invalid_json", "detail": detail})
        if not isinstance(body, dict):
            return _json(400, {"error": "invalid_request", "detail": "a JSON object is required"})
        given = [k for k in REQUEST_KINDS if k in body]
        unknown = sorted(set(body) - set(REQUEST_KINDS) - {"before"})
        if len(given) != 1 or unknown:
            detail = f"exactly one of {', '.join(REQUEST_KINDS)}, and optionally before"
            return _json(400, {"error": "invalid_request", "detail": detail})
        what = given[0]
        try:
            value = body[what]
            if not isinstance(value, str):
                raise RevocationError(f"{what}: must be a string")
            entry = from_request(
                what,
                value,
                before=body.get("before"),
                now=time.time(),
                max_lifetime=actions.max_lifetime,
                skew=actions.skew,
            )
        except RevocationError as exc:
            return _json(400, {"error": "invalid_request", "detail": str(exc)})
        try:
            await actions.store().add(entry)
        except Exception as exc:  # any store failure: the caller must know it did not happen
            log.error("admin API: revocation store %s failed: %s", actions.store().name, exc)
            return _json(503, {"error": "store_unavailable"})
        actions.on_revoked(entry)
        log.info("admin API: revoked %s (until %d)", _loggable(entry), entry.until)
        return _json(201, {"revoked": entry.describe()})

    async def list_entries(request: web.Request) -> web.Response:
        try:
            entries = await actions.store().entries()
        except Exception as exc:  # any store failure
            log.error("admin API: revocation store %s failed: %s", actions.store().name, exc)
            return _json(503, {"error": "store_unavailable"})
        return _json(200, {"revocations": [e.describe() for e in entries]})

    async def reload(request: web.Request) -> web.Response:
        status, message = await actions.reload_keyring()
        return _json(status, {"keyring": message})

    app.middlewares.append(authenticate)
    app.router.add_post("/admin/revocations", revoke)
    app.router.add_get("/admin/revocations", list_entries)
    app.router.add_post("/admin/keyring/reload", reload)


def _loggable(entry: Revocation) -> str:
    """Token ids are digests, safe to log; the other kinds name what operators revoked."""
    return f"{entry.kind.value} {entry.value}"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode() + b"\n",
        content_type="application/json",
        headers=headers,
    )
