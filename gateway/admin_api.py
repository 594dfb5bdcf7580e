"""The operators' HTTP API, mounted on the admin listener only (never the public port).

    POST /admin/revocations      {"sub": "user-42"} | {"url": ...} | {"digest": ...}
                                 | {"key_id": ...} | {"prefix": ..., "before": unix seconds}
    GET  /admin/revocations      the live entries
    POST /admin/keyring/reload   reload the keyring now
    POST /admin/purge            {"key": "/videos/a.mp4"} | {"prefix": "/videos/ep1/"}: drop
                                 cached copies (request paths; `gateway.cache.purges`)
    GET  /admin/limits/{token_id}    a limited link's uses, bytes served and open streams
    GET  /admin/limits?sub=SUB       a subject's shared streams (SubjectStreams)
    POST | DELETE  the same paths    reset them: an exhausted link is usable again

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

from gateway.cache.purges import Purge, PurgeError, PurgeFailed, PurgeResult, from_body
from gateway.errors import Refusal, Refused, answer
from gateway.http_server import Response
from gateway.limits import LimitStore, LimitStoreError
from gateway.limits import commands as limit_commands
from gateway.revocation import Revocation, RevocationError, RevocationStore, from_request
from gateway.revocation.entries import REQUEST_KINDS

log = logging.getLogger("gateway.admin")

MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AdminActions:
    store: Callable[[], RevocationStore]  # a getter: the store opens after the admin app exists
    max_lifetime: float
    skew: float
    reload_keyring: Callable[[], Awaitable[tuple[int, str]]]  # -> (HTTP status, message)
    on_revoked: Callable[[Revocation], None] = lambda entry: None
    purge: Callable[[Purge], Awaitable[PurgeResult]] | None = None  # None: no purge route
    limits: Callable[[], LimitStore | None] | None = None  # None: no limits routes


def add_admin_api(app: web.Application, token: str | None, actions: AdminActions) -> None:
    """Mount the API on `app`, which must be made with `client_max_size=MAX_BODY`."""
    if not token:
        return
    expected = token.encode()

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/admin/"):
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # aiohttp decodes header bytes with surrogateescape: encode them back the same way.
        given_bytes = given.encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, expected):
            log.warning(
                "admin API: refused %s %s (bad or missing bearer token)",
                request.method,
                request.path,
            )
            return _web(answer(Refused(Refusal.UNAUTHORIZED)))
        try:
            return await handler(request)
        except Refused as exc:
            return _web(answer(exc))

    async def revoke(request: web.Request) -> web.Response:
        what, value, before = _revocation_request(await _json_body(request))
        try:
            entry = from_request(
                what,
                value,
                before=before,
                now=time.time(),
                max_lifetime=actions.max_lifetime,
                skew=actions.skew,
            )
        except RevocationError as exc:
            raise Refused(Refusal.INVALID_REQUEST, detail=str(exc)) from None
        try:
            await actions.store().add(entry)
        except Exception as exc:  # any store failure: the caller must know it did not happen
            log.error("admin API: revocation store %s failed: %s", actions.store().name, exc)
            raise Refused(Refusal.STORE_UNAVAILABLE) from None
        actions.on_revoked(entry)
        log.info("admin API: revoked %s (until %d)", _loggable(entry), entry.until)
        return _json(201, {"revoked": entry.as_dict()})

    async def list_entries(request: web.Request) -> web.Response:
        try:
            entries = await actions.store().entries()
        except Exception as exc:  # any store failure
            log.error("admin API: revocation store %s failed: %s", actions.store().name, exc)
            raise Refused(Refusal.STORE_UNAVAILABLE) from None
        return _json(200, {"revocations": [e.as_dict() for e in entries]})

    async def reload(request: web.Request) -> web.Response:
        status, message = await actions.reload_keyring()
        return _json(status, {"keyring": message})

    async def purge(request: web.Request) -> web.Response:
        assert actions.purge is not None
        try:
            wanted = from_body(await _json_body(request))
        except PurgeError as exc:
            raise Refused(Refusal.INVALID_REQUEST, detail=str(exc)) from None
        try:
            result = await actions.purge(wanted)
        except PurgeFailed as exc:
            raise Refused(Refusal.STORE_UNAVAILABLE, detail=str(exc)) from None
        log.info(
            "admin API: purged %s %s (%s dropped here%s)",
            wanted.target.value,
            wanted.path,
            "none" if result.dropped is None else result.dropped,
            ", published to the fleet" if result.published else "",
        )
        return _json(
            200,
            {
                "purged": wanted.describe(),
                "dropped": result.dropped,
                "published": result.published,
            },
        )

    async def limits(request: web.Request) -> web.Response:
        assert actions.limits is not None
        store = actions.limits()
        if store is None:
            raise Refused(Refusal.STORE_UNAVAILABLE, detail="usage limits are not enforced here")
        link = request.match_info.get("token_id")
        if link is not None and not limit_commands.TOKEN_ID.fullmatch(link):
            raise Refused(Refusal.INVALID_REQUEST, detail="a token id is 32 hex digits")
        sub = request.query.get("sub") if link is None else None
        if link is None and not sub:
            raise Refused(Refusal.INVALID_REQUEST, detail="/admin/limits/{token_id} or ?sub=")
        wanted = limit_commands.target(link, sub=sub)
        try:
            if request.method == "GET":
                return _json(200, (await limit_commands.show(store, wanted)).as_dict())
            await limit_commands.reset(store, wanted)
        except LimitStoreError as exc:
            log.error("admin API: limit store %s failed: %s", store.name, exc)
            raise Refused(Refusal.STORE_UNAVAILABLE) from None
        log.info("admin API: %s", limit_commands.describe_reset(wanted, store.name))
        return _json(200, {"reset": {"token_id": link} if link is not None else {"sub": sub}})

    app.middlewares.append(authenticate)
    app.router.add_post("/admin/revocations", revoke)
    app.router.add_get("/admin/revocations", list_entries)
    app.router.add_post("/admin/keyring/reload", reload)
    if actions.purge is not None:
        app.router.add_post("/admin/purge", purge)
    if actions.limits is not None:
        for path in ("/admin/limits", "/admin/limits/{token_id}"):
            app.router.add_get(path, limits)
            app.router.add_post(path, limits)
            app.router.add_delete(path, limits)


async def _json_body(request: web.Request) -> object:
    """The request's JSON document, read within the app's `client_max_size` (MAX_BODY)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused(Refusal.BODY_TOO_LARGE)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(Refusal.BODY_TOO_LARGE) from None
    try:
        return json.loads(raw or b"null")
    except (ValueError, RecursionError):
        # RecursionError: a document nested deeper than the parser goes.
        raise Refused(Refusal.INVALID_JSON, detail="the body is not JSON (UTF-8)") from None


def _revocation_request(body: object) -> tuple[str, str, Any]:
    """(what, value, before) of a revocation request, or the refusal saying what is wrong."""
    if not isinstance(body, dict):
        raise Refused(Refusal.INVALID_REQUEST, detail="a JSON object is required")
    given = [k for k in REQUEST_KINDS if k in body]
    unknown = sorted(set(body) - set(REQUEST_KINDS) - {"before"})
    if len(given) != 1 or unknown:
        detail = f"exactly one of {', '.join(REQUEST_KINDS)}, and optionally before"
        raise Refused(Refusal.INVALID_REQUEST, detail=detail)
    what = given[0]
    value = body[what]
    if not isinstance(value, str):
        raise Refused(Refusal.INVALID_REQUEST, detail=f"{what}: must be a string")
    return what, value, body.get("before")


def _loggable(entry: Revocation) -> str:
    """Token ids are digests, safe to log; the other kinds name what operators revoked."""
    return f"{entry.kind.value} {entry.value}"


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode() + b"\n",
        content_type="application/json",
    )


def _web(refused: Response) -> web.Response:
    """The catalogue's answer (`gateway.errors`) as aiohttp's, for this listener."""
    return web.Response(status=refused.status, headers=refused.headers, body=refused.body)
