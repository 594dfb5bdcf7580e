"""Application factories: the public app (the pipeline) and the admin app (health, metrics).

The public app owns the gateway's resources through the cleanup contexts of
`gateway.services`: they are opened at start-up (where a failure stops the process with a
message) and closed after in-flight requests have drained. The admin app reads the same
`Services`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import connections
from gateway.admin_api import AdminActions, add_admin_api
from gateway.cache.purges import Purge, PurgeResult
from gateway.errors import HEAD_REFUSALS, error_response
from gateway.handler import Pipeline
from gateway.http_server import Answer, Request, Response, Server
from gateway.observability.metrics import Metrics
from gateway.revocation import Revocation
from gateway.services import SERVICES, SETTINGS, Services, contexts
from gateway.settings import Settings

PIPELINE: Final = web.AppKey("pipeline", Pipeline)
SERVER: Final = "edge-gateway"  # the `Server` header: no software versions for scanners


def create_app(settings: Settings) -> web.Application:
    """The public app: the holder of the services and the pipeline, which `PublicListener`
    serves (aiohttp's application is kept for its start-up and clean-up order, not its
    server)."""
    app = web.Application()
    app[SETTINGS] = settings
    app[connections.CONNECTIONS] = connections.Guard(connections.limits(settings))

    async def pipeline(app: web.Application) -> AsyncIterator[None]:
        app[PIPELINE] = Pipeline(app[SERVICES])
        yield

    app.cleanup_ctx.extend([*contexts(), pipeline])
    return app


class PublicListener:
    """The public app served by the gateway's own server (`gateway.http_server`): `start`
    opens its services (a failure stops the start, with what was opened closed again by
    `cleanup`) and makes the server, which `server.listen` binds; `cleanup` closes the
    connections and then the services."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._server: Server | None = None
        self._started = False

    @property
    def server(self) -> Server:
        assert self._server is not None, "start() first"
        return self._server

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        app = self.app
        app.on_startup.freeze()  # as aiohttp's runner does: the contexts still fill the app
        self._started = True
        await app.startup()
        app.freeze()
        services = app[SERVICES]
        self._server = Server(
            app[PIPELINE],
            guard=app[connections.CONNECTIONS],
            in_flight=services.in_flight,
            refuse=_refusals(services.metrics),
            before_answer=_cors(services) if services.settings.cors.origins else None,
            name=SERVER,
        )

    async def cleanup(self) -> None:
        if self._server is not None:
            await self._server.close()
        if self._started:
            self._started = False
            self.app.freeze()  # after a failed start too: its clean-up signal must be frozen
            await self.app.cleanup()


def _refusals(metrics: Metrics) -> Callable[[int], Response]:
    """The server's answers to heads it refused (never seen by the pipeline, so counted here)
    and to a handler's unexpected failure (which the pipeline has counted)."""

    def refuse(status: int) -> Response:
        refusal = HEAD_REFUSALS.get(status, HEAD_REFUSALS[400])
        if refusal.status != 500:
            metrics.request_counter("OTHER", refusal.status, refusal.code).inc()
        return error_response(refusal.status, refusal.code)

    return refuse


def _cors(services: Services) -> Callable[[Request, Answer], None]:
    cors = services.cors

    def before_answer(request: Request, answer: Answer) -> None:
        # The CORS headers for an allowed origin; a preflight answer already has its own.
        if "Access-Control-Allow-Methods" not in answer.headers:
            answer.headers.update(cors.response_headers(request.headers.get("Origin")))

    return before_answer


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
