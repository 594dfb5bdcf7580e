"""Application factories: the public app (the pipeline) and the admin app (health, metrics).

The public app owns the gateway's resources through the cleanup contexts of
`gateway.services`: they are opened at start-up (where a failure stops the process with a
message) and closed after in-flight requests have drained. The admin app reads the same
`Services`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final, TypedDict, cast

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import connections
from gateway.admin_api import AdminActions, add_admin_api
from gateway.cache.purges import Purge, PurgeResult
from gateway.handler import Pipeline
from gateway.revocation import Revocation
from gateway.services import SERVICES, SETTINGS, contexts
from gateway.settings import Settings
from gateway.uploads import close_if_body_unread, defer_expect

PIPELINE: Final = web.AppKey("pipeline", Pipeline)
SERVER: Final = "edge-gateway"
CATCH_ALL: Final = "/{path:.*}"  # the public app's one route


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings

    async def pipeline(app: web.Application) -> AsyncIterator[None]:
        app[PIPELINE] = Pipeline(app[SERVICES])
        yield

    async def on_shutdown(app: web.Application) -> None:
        app[SERVICES].in_flight.draining = True

    async def handle(request: web.Request) -> web.StreamResponse:
        request.app[SERVICES].in_flight.track(request.task)  # a shutdown waits for it
        return await request.app[PIPELINE](request)

    cors_on = bool(settings.cors.origins)

    async def before_answer(request: web.Request, response: web.StreamResponse) -> None:
        # One receiver for every answer (objects, 304s, errors): each receiver costs a
        # coroutine per answer. No software versions for scanners in `Server`.
        response.headers["Server"] = SERVER
        close_if_body_unread(request, response)
        services = request.app[SERVICES]
        if services.in_flight.draining:
            response.force_close()  # the connection ends after this answer...
            response.headers[hdrs.CONNECTION] = "close"  # ...and the client is told so
        # The CORS headers for an allowed origin; a preflight answer already has its own.
        if cors_on and "Access-Control-Allow-Methods" not in response.headers:
            response.headers.update(services.cors.response_headers(request.headers.get("Origin")))

    app.cleanup_ctx.extend([*contexts(), pipeline])
    app.on_shutdown.append(on_shutdown)
    app.on_response_prepare.append(before_answer)
    route = app.router.add_route("*", CATCH_ALL, handle, expect_handler=defer_expect)
    app[connections.REQUEST_HANDLER] = _routed_directly(app, route)
    return app


def _routed_directly(app: web.Application, route: web.AbstractRoute) -> connections.Handler:
    """`Application._handle` for the public app, whose one route takes every path: it asks the
    router to walk the path and builds a match info per request (about 4% of a small GET's
    CPU, profiled), when every request the route takes gets the same match info (no
    middlewares, nothing in it that depends on the request). So those requests get one
    frozen match info and go straight to the route's handler; the rest (a path the route's
    pattern refuses, an `Expect` header for its expect handler) take `Application._handle`."""
    match = UrlMappingMatchInfo({}, route)
    match.add_app(app)
    match.freeze()
    routed = app._handle
    handler = route.handler

    async def handle(base: web.BaseRequest) -> web.StreamResponse:
        request = cast(web.Request, base)  # what the app's request factory makes
        # `CATCH_ALL` takes a decoded path of "/" and anything but a newline: so does this,
        # from the raw target (decoding is left to the router for any "%0" in it).
        raw = request.raw_path
        if raw[:1] != "/" or "%0" in raw or hdrs.EXPECT in request.headers:
            return await routed(request)
        request._match_info = match
        return await handler(request)

    return handle


class RunnerOptions(TypedDict):
    limits: connections.Limits
    access_log: None
    auto_decompress: bool


def runner_options(settings: Settings) -> RunnerOptions:
    """How the public app is served, by `gateway serve` and by the tests' gateway alike, as
    the arguments of `connections.Runner`: the connection limits; no aiohttp access log (the
    pipeline writes its own, redacted); request bodies never decompressed (what is stored is
    what was sent)."""
    return {
        "limits": connections.limits(settings),
        "access_log": None,
        "auto_decompress": False,
    }


async def readiness(public: web.Application) -> tuple[int, str]:
    """`/readyz` of one process: starting, draining, or every registered check."""
    services = public.get(SERVICES)
    if services is None:
        return 503, "starting"
    if services.in_flight.draining:
        return 503, "draining"
    problem = await services.readiness.problem()
    if problem is not None:
        return 503, problem
    return 200, f"ready: keyring generation {services.keyring.generation}"


def create_admin_app(public: web.Application, settings: Settings) -> web.Application:
    """Internal endpoints. Bind this to a private interface only (GATEWAY_ADMIN_LISTEN)."""
    admin = web.Application()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        status, text = await readiness(public)
        return web.Response(status=status, text=f"{text}\n")

    async def metrics(request: web.Request) -> web.Response:
        services = public.get(SERVICES)
        if services is None:
            return web.Response(status=503, text="starting\n")
        body = generate_latest(services.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/readyz", readyz)
    admin.router.add_get("/metrics", metrics)
    add_admin_api(admin, settings.admin_token, _admin_actions(public, settings))
    return admin


def _admin_actions(public: web.Application, settings: Settings) -> AdminActions:
    """Admin actions of a single-process gateway: it owns the keyring and the view."""

    async def reload_keyring() -> tuple[int, str]:
        holder = public[SERVICES].keyring
        if holder.reload():
            return 200, f"reloaded: generation {holder.generation}"
        return 422, f"reload failed, keeping generation {holder.generation} (see the log)"

    def on_revoked(entry: Revocation) -> None:
        services = public[SERVICES]
        services.revocations.apply(entry)  # enforced here at once, before the next sync
        services.metrics.revocations_added.inc()

    async def purge(wanted: Purge) -> PurgeResult:
        return await public[SERVICES].purges.purge(wanted)

    return AdminActions(
        store=lambda: public[SERVICES].revocation_store,
        max_lifetime=settings.links.max_lifetime,
        skew=settings.links.clock_skew,
        reload_keyring=reload_keyring,
        on_revoked=on_revoked,
        purge=purge,
        limits=lambda: None if (on := public[SERVICES].limits) is None else on.store,
    )
