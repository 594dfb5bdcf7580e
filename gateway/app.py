"""Application factories: the public app (the pipeline) and the admin app (health, metrics).

The public app owns the gateway's resources through a cleanup context: the keyring and the
storage client are created at start-up (where a failure stops the process with a message) and
closed after in-flight requests have drained. The admin app reads the same `Gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.admin_api import AdminActions, add_admin_api
from gateway.handler import Gateway, Pipeline
from gateway.keyring import KeyringHolder
from gateway.observability.metrics import Metrics
from gateway.revocation import Kind, Revocation, RevocationStore, RevocationView
from gateway.revocation import make_store as make_revocation_store
from gateway.settings import Settings
from gateway.storage import ObjectStore, StorageError
from gateway.storage.local import LocalStore
from gateway.storage.s3 import S3Store
from gateway.upload import close_if_body_unread, defer_expect

log = logging.getLogger("gateway")

GATEWAY = web.AppKey("gateway", Gateway)
PIPELINE = web.AppKey("pipeline", Pipeline)
DRAINING = web.AppKey("draining", list[bool])
SERVER = "edge-gateway"
SWEEP_EVERY = 60.0
FIRST_SYNC_WAIT = 5.0


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
        upload_part_size=settings.upload_part_size,
    )


def create_app(
    settings: Settings, store_factory: Callable[[Settings], ObjectStore] | None = None
) -> web.Application:
    app = web.Application()
    app[DRAINING] = [False]

    async def resources(app: web.Application) -> AsyncIterator[None]:
        keyring = KeyringHolder(settings.keyring)
        revocation_store = make_revocation_store(settings)
        await revocation_store.open()
        store = store_factory(settings) if store_factory else make_store(settings)
        start = getattr(store, "start", None)
        if start is not None:
            await start()
        metrics = Metrics()
        _watch_keyring(keyring, metrics)
        revocations = RevocationView()
        _watch_revocations(revocations, revocation_store, metrics)
        gateway = Gateway(
            settings=settings,
            keyring=keyring,
            store=store,
            metrics=metrics,
            revocations=revocations,
            revocation_store=revocation_store,
        )
        tasks = [
            asyncio.create_task(revocation_store.follow(revocations), name="revocations"),
            asyncio.create_task(_sweep(revocations), name="revocation-sweep"),
        ]
        if settings.keyring_watch_interval > 0:
            tasks.append(
                asyncio.create_task(keyring.watch(settings.keyring_watch_interval), name="keyring")
            )
        await _first_sync(revocations, min(FIRST_SYNC_WAIT, settings.revocation_max_staleness))
        app[GATEWAY] = gateway
        app[PIPELINE] = Pipeline(gateway)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await store.close()
            await revocation_store.close()

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
    app.on_response_prepare.extend([server_header, close_if_body_unread])
    if settings.cors.enabled:
        app.on_response_prepare.append(cors_headers)
    app.router.add_route("*", "/{path:.*}", handle, expect_handler=defer_expect)
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


async def _first_sync(view: RevocationView, within: float) -> None:
    """Serve only once the revocation list is loaded, unless the store is down: then start
    anyway (not ready, so a load balancer keeps traffic away) and catch up when it is back."""
    try:
        async with asyncio.timeout(within):
            await view.first_sync.wait()
    except TimeoutError:
        log.warning("revocation store not reachable yet; starting not-ready")


async def _sweep(view: RevocationView) -> None:
    while True:
        await asyncio.sleep(SWEEP_EVERY)
        dropped = view.sweep()
        if dropped:
            log.info("dropped %d expired revocations from the view", dropped)


def _watch_revocations(view: RevocationView, store: RevocationStore, metrics: Metrics) -> None:
    for kind in Kind:
        metrics.revocation_entries.labels(kind.value).set_function(
            lambda kind=kind: view.count(kind)  # type: ignore[misc]
        )
    metrics.revocation_sync_lag.set_function(lambda: min(view.lag(), 1e9))
    metrics.revocation_store_up.set_function(lambda: 1.0 if store.connected else 0.0)
    metrics.count_callback(
        "gateway_revocation_resyncs",
        "Full resyncs of the revocation view from its store (start and every reconnect).",
        lambda: float(getattr(store, "resyncs", 0)),
    )


def revocation_readiness(view: RevocationView, max_staleness: float) -> str | None:
    """Why the gateway is not ready on account of revocations, or None."""
    lag = view.lag()
    if lag > max_staleness:
        shown = "never synced" if lag == float("inf") else f"last sync {lag:.1f}s ago"
        return f"revocations stale: {shown} (bound {max_staleness:g}s)"
    return None


def create_admin_app(public: web.Application, settings: Settings) -> web.Application:
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
        stale = revocation_readiness(gateway.revocations, gateway.settings.revocation_max_staleness)
        if stale is not None:
            return web.Response(status=503, text=f"{stale}\n")
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
    add_admin_api(admin, settings.admin_token, _admin_actions(public, settings))
    return admin


def _admin_actions(public: web.Application, settings: Settings) -> AdminActions:
    """Admin actions of a single-process gateway: it owns the keyring and the view."""

    async def reload_keyring() -> tuple[int, str]:
        holder = public[GATEWAY].keyring
        if holder.reload():
            return 200, f"reloaded: generation {holder.generation}"
        return 422, f"reload failed, keeping generation {holder.generation} (see the log)"

    def on_revoked(entry: Revocation) -> None:
        public[GATEWAY].revocations.apply(entry)  # enforced here at once, before the next sync
        public[GATEWAY].metrics.revocations_added.inc()

    return AdminActions(
        store=lambda: public[GATEWAY].revocation_store,
        max_lifetime=settings.max_link_lifetime,
        skew=settings.clock_skew,
        reload_keyring=reload_keyring,
        on_revoked=on_revoked,
    )
