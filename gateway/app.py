"""Application factories: the public app (the pipeline) and the admin app (health, metrics).

The public app owns the gateway's resources through a cleanup context: the keyring and the
storage client are created at start-up (where a failure stops the process with a message) and
closed after in-flight requests have drained. The admin app reads the same `Gateway`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.handler import Gateway, Pipeline
from gateway.keyring import KeyringHolder
from gateway.observability.metrics import Metrics
from gateway.settings import Settings
from gateway.storage import ObjectStore, StorageError
from gateway.storage.local import LocalStore
from gateway.storage.s3 import S3Store

log = logging.getLogger("gateway")

GATEWAY = web.AppKey("gateway", Gateway)
PIPELINE = web.AppKey("pipeline", Pipeline)
DRAINING = web.AppKey("draining", list[bool])
SERVER = "edge-gateway"


def make_store(settings: Settings) -> LocalStore | S3Store:
    origin = settings.origin
    if origin.scheme == "file":
        assert origin.path is not None
        return LocalStore(origin.path, chunk_size=settings.chunk_size)
    assert settings.s3_region is not None
    return S3Store(
        bucket=origin.bucket,
        region=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url,
        connect_timeout=settings.connect_timeout,
        first_byte_timeout=settings.first_byte_timeout,
        idle_timeout=settings.idle_timeout,
        chunk_size=settings.chunk_size,
        pool_size=settings.origin_connections,
    )


def create_app(
    settings: Settings, store_factory: Callable[[Settings], ObjectStore] | None = None
) -> web.Application:
    app = web.Application()
    app[DRAINING] = [False]

    async def resources(app: web.Application) -> AsyncIterator[None]:
        keyring = KeyringHolder(settings.keyring)
        store = store_factory(settings) if store_factory else make_store(settings)
        start = getattr(store, "start", None)
        if start is not None:
            await start()
        metrics = Metrics()
        _watch_keyring(keyring, metrics)
        gateway = Gateway(settings=settings, keyring=keyring, store=store, metrics=metrics)
        app[GATEWAY] = gateway
        app[PIPELINE] = Pipeline(gateway)
        try:
            yield
        finally:
            await store.close()

    async def on_shutdown(app: web.Application) -> None:
        app[DRAINING][0] = True

    async def handle(request: web.Request) -> web.StreamResponse:
        return await request.app[PIPELINE](request)

    async def server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = SERVER  # no software versions for scanners

    async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
        # Every answer (objects, 304s, errors) gets the CORS headers for an allowed origin; a
        # preflight answer already has its own.
        if "Access-Control-Allow-Methods" not in response.headers:
            response.headers.update(settings.cors.response_headers(request.headers.get("Origin")))

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(on_shutdown)
    app.on_response_prepare.append(server_header)
    if settings.cors.enabled:
        app.on_response_prepare.append(cors_headers)
    app.router.add_route("*", "/{path:.*}", handle)
    return app


def _watch_keyring(holder: KeyringHolder, metrics: Metrics) -> None:
    def publish(current: KeyringHolder) -> None:
        metrics.keyring_generation.set(current.generation)
        for status, count in current.current.count_by_status().items():
            metrics.keyring_keys.labels(status.value).set(count)

    previous_failures = [0]

    def count_failures(current: KeyringHolder) -> None:
        new = current.reload_failures - previous_failures[0]
        if new > 0:
            metrics.keyring_reload_failures.inc(new)
        previous_failures[0] = current.reload_failures

    holder.listeners.extend([publish, count_failures])
    publish(holder)


def create_admin_app(public: web.Application) -> web.Application:
    """Internal endpoints. Bind this to a private interface only (GATEWAY_ADMIN_LISTEN)."""
    admin = web.Application()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if public[DRAINING][0]:
            return web.Response(status=503, text="draining\n")
        gateway = public.get(GATEWAY)
        if gateway is None:
            return web.Response(status=503, text="starting\n")
        try:
            await gateway.store.check()
        except StorageError as exc:
            return web.Response(status=503, text=f"storage: {exc.kind}\n")
        return web.Response(text=f"ready: keyring generation {gateway.keyring.generation}\n")

    async def metrics(request: web.Request) -> web.Response:
        gateway = public.get(GATEWAY)
        if gateway is None:
            return web.Response(status=503, text="starting\n")
        body = generate_latest(gateway.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/readyz", readyz)
    admin.router.add_get("/metrics", metrics)
    return admin
