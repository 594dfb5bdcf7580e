"""What a request needs, built once at start-up, each resource with its own cleanup context.

    metrics -> keyring (+ watcher) -> revocation store -> limit store (the same URL)
        -> revocation view (snapshot loaded, + follower, sweeper, snapshot writer)
        -> object store -> sweeper of abandoned uploads -> cache
        -> purges (+ the fleet's purge stream) -> TLS -> Services

Each step is an aiohttp cleanup context: it opens one resource, registers the readiness check
that resource needs, and closes it on the way out. If a step fails at start-up (no AWS
credentials, a bad keyring), aiohttp runs the cleanup of the steps already done, so nothing
opened before the failure stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from gateway.cache import Cache, Limits
from gateway.cache.purges import Purges, open_purges
from gateway.cache.tiers import Tiers
from gateway.client_address import TrustedProxies
from gateway.connections import CLOSE_REASONS, CONNECTIONS, Guard
from gateway.drain import InFlight
from gateway.http.cors import CorsPolicy
from gateway.keyring import KeyringHolder
from gateway.leases import sweep_abandoned
from gateway.limits import Limits as UsageLimits
from gateway.limits.backends import open_store as open_limit_store
from gateway.observability.metrics import Metrics
from gateway.observability.redaction import redact_url
from gateway.revocation import Kind, RevocationStore, RevocationView, snapshot
from gateway.revocation.backends import open_store as open_revocation_store
from gateway.settings import Settings, SettingsError
from gateway.storage import ObjectStore, StorageError
from gateway.storage.backends import open_store
from gateway.tls import CertificateHolder

log = logging.getLogger("gateway")

SWEEP_EVERY: Final = 60.0
FIRST_SYNC_WAIT: Final = 5.0
SNAPSHOT_EVERY: Final = 60.0  # rewritten this often while in sync, so its age stays true
SNAPSHOT_GAP: Final = 1.0  # and at most this often in a burst of revocations

Check = Callable[[], Awaitable[str | None]]  # -> why the gateway is not ready, or None


@dataclass
class Readiness:
    """The checks `/readyz` runs, in order; each resource registers its own."""

    checks: list[tuple[str, Check]] = field(default_factory=list)

    def add(self, name: str, check: Check) -> None:
        self.checks.append((name, check))

    async def problem(self) -> str | None:
        """The first failing check's message, or None when every check passes."""
        for _, check in self.checks:
            message = await check()
            if message is not None:
                return message
        return None


@dataclass(frozen=True)
class Services:
    """Everything a request needs, built once at start-up."""

    settings: Settings
    keyring: KeyringHolder
    store: ObjectStore
    metrics: Metrics
    revocations: RevocationView
    revocation_store: RevocationStore
    readiness: Readiness
    proxies: TrustedProxies
    cors: CorsPolicy
    cache: Cache | None  # None: the cache is off
    tls: CertificateHolder | None  # None: plain HTTP
    in_flight: InFlight
    purges: Purges
    limits: UsageLimits | None = None  # None: links' usage limits are not enforced (tests)


SERVICES: Final = web.AppKey("services", Services)
SETTINGS: Final = web.AppKey("settings", Settings)
_METRICS: Final = web.AppKey("metrics", Metrics)
_KEYRING: Final = web.AppKey("keyring", KeyringHolder)
_REVOCATION_STORE: Final = web.AppKey("revocation_store", RevocationStore)
_REVOCATIONS: Final = web.AppKey("revocations", RevocationView)
_STORE: Final = web.AppKey("store", ObjectStore)
_READINESS: Final = web.AppKey("readiness", Readiness)
_CACHE: Final = web.AppKey("cache", Cache)
_TLS: Final = web.AppKey("tls", CertificateHolder)
_PURGES: Final = web.AppKey("purges", Purges)
_LIMITS: Final = web.AppKey("limits", UsageLimits)

Context = Callable[[web.Application], AsyncIterator[None]]


def contexts() -> list[Context]:
    """The cleanup contexts, in start-up order (aiohttp closes them in reverse)."""
    return [
        _metrics,
        _keyring,
        _revocation_store,
        _limit_store,
        _revocation_view,
        _object_store,
        _upload_sweeper,
        _cache,
        _purges,
        _tls,
        _assemble,
    ]


async def _metrics(app: web.Application) -> AsyncIterator[None]:
    app[_METRICS] = Metrics()
    app[_READINESS] = Readiness()
    guard = app.get(CONNECTIONS)  # set by `create_app`
    if guard is not None:
        _publish_connections(guard, app[_METRICS])
    yield


async def _keyring(app: web.Application) -> AsyncIterator[None]:
    settings, metrics = app[SETTINGS], app[_METRICS]
    holder = KeyringHolder(settings.keyring)
    _publish_keyring(holder, metrics)
    app[_KEYRING] = holder
    interval = settings.keyring_watch_interval
    async with _background(holder.watch(interval) if interval > 0 else None, "keyring"):
        yield


async def _revocation_store(app: web.Application) -> AsyncIterator[None]:
    store = open_revocation_store(app[SETTINGS].revocation.store_url)
    try:
        await store.open()
        app[_REVOCATION_STORE] = store
        yield
    finally:
        await store.close()


async def _limit_store(app: web.Application) -> AsyncIterator[None]:
    """Usage limits, counted where revocations are kept: Redis for a fleet, else the file."""
    settings = app[SETTINGS]
    store = open_limit_store(settings.revocation.store_url)
    try:
        await store.open()
        app[_LIMITS] = UsageLimits(
            store,
            lease=settings.limits.stream_lease,
            skew=settings.links.clock_skew,
            fail_open=settings.limits.fail_open,
        )
        yield
    finally:
        await store.close()


async def _revocation_view(app: web.Application) -> AsyncIterator[None]:
    settings, store, metrics = app[SETTINGS], app[_REVOCATION_STORE], app[_METRICS]
    view = RevocationView()
    _publish_revocations(view, store, metrics)
    bound = settings.revocation.max_staleness

    async def fresh() -> str | None:
        return revocation_staleness(view, bound)

    app[_READINESS].add("revocations", fresh)
    app[_REVOCATIONS] = view
    path = settings.revocation.snapshot
    writer = None
    if path is not None:
        store_name = redact_url(settings.revocation.store_url)
        await _restore(view, path, store_name, settings.links.max_lifetime)
        writer = _SnapshotWriter(view, path, store_name)
    async with (
        _background(store.follow(view), "revocations"),
        _background(_sweep(view), "sweep"),
        _background(writer.run() if writer else None, "snapshot"),
    ):
        await _first_sync(
            view, min(FIRST_SYNC_WAIT, bound), fail_open=settings.revocation.fail_open
        )
        yield


async def _object_store(app: web.Application) -> AsyncIterator[None]:
    store = open_store(app[SETTINGS])
    try:
        await store.start()

        async def reachable() -> str | None:
            try:
                await store.check()
            except StorageError as exc:
                return f"storage: {exc.kind}"
            return None

        app[_READINESS].add("storage", reachable)
        app[_STORE] = store
        yield
    finally:
        await store.close()


async def _upload_sweeper(app: web.Application) -> AsyncIterator[None]:
    """Aborts the multipart uploads of gateways that died mid-upload (`gateway.leases`)."""
    every = app[SETTINGS].uploads.sweep_interval
    work = (
        sweep_abandoned(app[_REVOCATION_STORE], app[_STORE], app[_METRICS], every)
        if every > 0
        else None
    )
    async with _background(work, "upload sweep"):
        yield


async def _cache(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].cache
    if not settings.enabled:
        yield
        return
    tiers = Tiers(
        settings.directory if settings.disk_bytes > 0 else None,
        disk_bytes=settings.disk_bytes,
        memory_bytes=settings.memory_bytes,
        memory_object_bytes=settings.memory_object_bytes,
        slice_bytes=settings.slice_bytes,
    )
    started = time.perf_counter()
    found = await asyncio.to_thread(tiers.load)
    log.info(
        "cache: %d objects found in %s in %.2fs",
        found,
        settings.directory,
        time.perf_counter() - started,
    )
    cache = Cache(
        tiers,
        Limits(
            disk_bytes=settings.disk_bytes,
            memory_bytes=settings.memory_bytes,
            memory_object_bytes=settings.memory_object_bytes,
            slice_bytes=settings.slice_bytes,
            ttl=settings.ttl,
            stale_if_error=settings.stale_if_error,
        ),
    )
    _publish_cache(cache, app[_METRICS])
    app[_CACHE] = cache
    try:
        yield
    finally:
        await cache.close()
        started = time.perf_counter()
        saved = await asyncio.to_thread(tiers.save_snapshot)  # nothing else runs by now
        log.info("cache: index of %d objects saved in %.2fs", saved, time.perf_counter() - started)


async def _purges(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_purges(
        app.get(_CACHE), settings.origin.prefix, settings.revocation.redis_url, app[_METRICS]
    ) as purges:
        app[_PURGES] = purges
        yield


async def _tls(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    certificate, key = settings.tls.certificate, settings.tls.key
    if certificate is None and key is None:
        yield
        return
    if certificate is None or key is None:
        missing = "GATEWAY_TLS_KEY" if key is None else "GATEWAY_TLS_CERTIFICATE"
        raise SettingsError(
            f"{missing}: TLS needs both GATEWAY_TLS_CERTIFICATE and GATEWAY_TLS_KEY"
        )
    try:
        holder = CertificateHolder(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"GATEWAY_TLS_CERTIFICATE: cannot load {certificate}: {exc}") from None
    app[_TLS] = holder
    interval = settings.keyring_watch_interval
    async with _background(holder.watch(interval) if interval > 0 else None, "tls"):
        yield


async def _assemble(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[SERVICES] = Services(
        settings=settings,
        keyring=app[_KEYRING],
        store=app[_STORE],
        metrics=app[_METRICS],
        revocations=app[_REVOCATIONS],
        revocation_store=app[_REVOCATION_STORE],
        readiness=app[_READINESS],
        proxies=TrustedProxies(settings.proxies.networks, settings.proxies.header),
        cors=CorsPolicy(settings.cors.origins, settings.cors.credentials, settings.cors.max_age),
        cache=app.get(_CACHE),
        tls=app.get(_TLS),
        in_flight=InFlight(),
        purges=app[_PURGES],
        limits=app[_LIMITS],
    )
    yield


@contextlib.asynccontextmanager
async def _background(work: Coroutine[Any, Any, None] | None, name: str) -> AsyncIterator[None]:
    """Run `work` as a task while the block runs; cancel and await it on the way out."""
    if work is None:
        yield
        return
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def revocation_staleness(view: RevocationView, max_staleness: float) -> str | None:
    """Why the gateway is not ready on account of revocations, or None."""
    lag = view.lag()
    if lag > max_staleness:
        shown = "never synced" if lag == float("inf") else f"last sync {lag:.1f}s ago"
        return f"revocations stale: {shown} (bound {max_staleness:g}s)"
    return None


async def _first_sync(view: RevocationView, within: float, *, fail_open: bool) -> None:
    """Serve only once the revocation list is loaded, unless the store is down: then start
    anyway (not ready, so a load balancer keeps traffic away) and catch up when it is back."""
    try:
        async with asyncio.timeout(within):
            await view.first_sync.wait()
    except TimeoutError:
        if view.loaded:
            meanwhile = "enforcing the snapshot"
        elif fail_open:
            meanwhile = "serving verified links unchecked (revocation_fail_open)"
        else:
            meanwhile = "refusing verified links (503 revocations_unavailable)"
        log.warning("revocation store not reachable yet; starting not-ready, %s", meanwhile)


async def _restore(view: RevocationView, path: Path, store: str, max_age: float) -> None:
    """Start from the snapshot, if there is a usable one: a Redis that is down at start then
    costs freshness, not every revocation. Without one the view stays unloaded and the
    pipeline refuses verified links (503) until the first sync, unless told to fail open."""
    now = time.time()
    try:
        found = await asyncio.to_thread(snapshot.read, path, store=store, now=now, max_age=max_age)
    except snapshot.NoSnapshot as exc:
        log.info("revocation snapshot: %s", exc)
        return
    except snapshot.SnapshotError as exc:
        log.warning("revocation snapshot not used: %s", exc)
        return
    view.restore(found.entries, found.synced_at)
    log.info(
        "revocation view restored from %s: %d entries, last in sync %.0fs ago",
        path,
        len(found.entries),
        max(0.0, now - found.synced_at),
    )


class _SnapshotWriter:
    """Writes the view to its snapshot after each sync that brought something (a full resync
    always does), and every `SNAPSHOT_EVERY` while in sync; never a view that has not synced
    since the last write, so a snapshot's time is always its view's last sync."""

    def __init__(self, view: RevocationView, path: Path, store: str) -> None:
        self.view, self.path, self.store = view, path, store
        self.written = view.synced_at  # the restored snapshot's, or None
        self.failing = False

    async def run(self) -> None:
        view = self.view
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SNAPSHOT_EVERY):
                    await view.changed.wait()
            view.changed.clear()
            started = time.monotonic()
            await self.save()
            # A long list takes a while to write: spend at most a tenth of the time on it.
            await asyncio.sleep(max(SNAPSHOT_GAP, 9 * (time.monotonic() - started)))

    async def save(self) -> None:
        view = self.view
        synced, synced_wall = view.synced_at, view.synced_wall()
        if synced is None or synced_wall is None or synced == self.written:
            return
        entries = view.copied()  # the thread reads copies, never the live tables
        try:
            await asyncio.to_thread(
                snapshot.write, self.path, store=self.store, synced_at=synced_wall, entries=entries
            )
        except OSError as exc:
            if not self.failing:
                log.warning("revocation snapshot %s not written: %s", self.path, exc)
            self.failing = True
            return
        if self.failing:
            log.info("revocation snapshot %s written again", self.path)
        self.failing = False
        self.written = synced


async def _sweep(view: RevocationView) -> None:
    while True:
        await asyncio.sleep(SWEEP_EVERY)
        dropped = view.sweep()
        if dropped:
            log.info("dropped %d expired revocations from the view", dropped)


def _publish_keyring(holder: KeyringHolder, metrics: Metrics) -> None:
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


def _publish_cache(cache: Cache, metrics: Metrics) -> None:
    for tier in ("memory", "disk"):
        metrics.cache_units.labels(tier).set_function(
            lambda tier=tier: cache.tiers.stats()[tier][0]  # type: ignore[misc]
        )
        metrics.cache_bytes.labels(tier).set_function(
            lambda tier=tier: cache.tiers.stats()[tier][1]  # type: ignore[misc]
        )
    callbacks = {
        "gateway_cache_evictions": (
            "Units evicted from the cache to make room, both tiers.",
            lambda: float(sum(cache.tiers.evictions.values())),
        ),
        "gateway_cache_collapsed": (
            "Slices streamed from a storage fetch that another request started, instead of "
            "fetching them again.",
            lambda: float(cache.collapsed),
        ),
        "gateway_cache_bypasses": (
            "Slices not stored because the cache directory could not take them.",
            lambda: float(cache.bypassed),
        ),
        "gateway_cache_served_bytes": (
            "Body bytes sent from the cache (memory or disk).",
            lambda: float(cache.cache_bytes),
        ),
        "gateway_cache_fetched_bytes": (
            "Body bytes fetched from storage through the cache.",
            lambda: float(cache.storage_bytes),
        ),
    }
    for name, (documentation, read) in callbacks.items():
        metrics.count_callback(name, documentation, read)


def _publish_connections(guard: Guard, metrics: Metrics) -> None:
    metrics.client_connections.set_function(lambda: len(guard))
    metrics.count_callback_by(
        "gateway_connections_closed",
        "Client connections the gateway closed, by reason: header_timeout, keepalive_timeout "
        "(idle past its deadline), over_capacity (the longest idle, past max_connections) or "
        "send_timeout (a response's client took no bytes for send_timeout).",
        "reason",
        lambda: {reason: float(guard.closed[reason]) for reason in CLOSE_REASONS},
    )


def _publish_revocations(view: RevocationView, store: RevocationStore, metrics: Metrics) -> None:
    for kind in Kind:
        metrics.revocation_entries.labels(kind.value).set_function(
            lambda kind=kind: view.count(kind)  # type: ignore[misc]
        )
    metrics.revocation_sync_lag.set_function(lambda: min(view.lag(), 1e9))
    metrics.revocation_store_up.set_function(lambda: 1.0 if store.connected else 0.0)
    metrics.count_callback(
        "gateway_revocation_resyncs",
        "Full resyncs of the revocation view from its store (start and every reconnect).",
        lambda: float(store.resyncs),
    )
