"""Running the gateway: one process, or a supervisor with N workers sharing the public port.

Signals: SIGTERM/SIGINT stop accepting, let in-flight requests (uploads included) finish for up
to `shutdown_grace` seconds, cut what still runs, and exit within EXIT_MARGIN seconds more
(`drain`); SIGHUP reloads the keyring. With several workers the supervisor forwards signals,
restarts a worker that dies, and serves the admin listener: each worker serves its own admin
app on a Unix socket only the supervisor uses, so `/readyz` applies every worker's own checks
and `/metrics` merges every worker's metrics (`gateway.workers`), and a
cache purge reaches every worker (handed over, or through the fleet's stream with Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Final

import uvloop
from aiohttp import web

from gateway import connections, heap, workers
from gateway.admin_api import MAX_BODY, AdminActions, add_admin_api
from gateway.app import PublicListener, create_admin_app, create_app
from gateway.cache.purges import FleetPurges, Purge, PurgeResult, Purges
from gateway.drain import InFlight
from gateway.limits.backends import open_store as open_limit_store
from gateway.observability.access_log import lines as access_lines
from gateway.revocation.backends import open_store as open_revocation_store
from gateway.services import SERVICES
from gateway.settings import Listen, Settings, SettingsError

log = logging.getLogger("gateway")

#: Seconds a process takes, at most, to exit once `shutdown_grace` is over: CUT_WAIT for the
#: requests it cuts to clean up (uploads aborted, claims given back), then closing connections
#: and services. A stop timeout (Kubernetes, Compose, systemd, Docker) must exceed the grace
#: plus this; tests/deploy checks that every deploy file's does.
EXIT_MARGIN: Final = 5.0
CUT_WAIT: Final = 1.5
#: What aiohttp's own shutdown may still wait per connection (twice): nothing is in flight by
#: then, so only a request that arrived in the last instant.
CLOSE_WAIT: Final = 0.5
#: The supervisor SIGKILLs a worker still running this long after the grace; it exits itself
#: within EXIT_MARGIN of the grace either way.
WORKER_EXIT_WAIT: Final = EXIT_MARGIN - 1


async def run(
    settings: Settings,
    *,
    admin_socket: Path | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. The admin app listens on `admin_listen`, or on
    `admin_socket` (a worker of the supervisor)."""
    app = create_app(settings)
    public = PublicListener(app)
    admin_runner = web.AppRunner(
        create_admin_app(app, settings),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=CLOSE_WAIT,
    )
    try:
        await public.start()  # opens every resource: failures surface here
        tls = app[SERVICES].tls
        listening = public.server.listen(
            settings.listen.host,
            settings.listen.port,
            reuse_port=True,
            backlog=1024,
            ssl_context=None if tls is None else tls.context,
        )
        await _bind(listening, "GATEWAY_LISTEN", settings.listen)
        await admin_runner.setup()
        if admin_socket is None:
            admin_site: web.BaseSite = web.TCPSite(
                admin_runner, settings.admin_listen.host, settings.admin_listen.port
            )
            await _bind(admin_site.start(), "GATEWAY_ADMIN_LISTEN", settings.admin_listen)
        else:
            await web.UnixSite(admin_runner, str(admin_socket)).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, app[SERVICES].keyring.reload)
        heap.settle()
        log.info(
            "serving %s on %s%s",
            settings.origin,
            settings.listen,
            "" if admin_socket else f", admin on {settings.admin_listen}",
        )
        if on_ready is not None:
            on_ready()
        await stop.wait()
        log.info(
            "stopping: no new connections; in-flight requests get %ss",
            settings.timeouts.shutdown_grace,
        )
        await drain(public, app[SERVICES].in_flight, settings.timeouts.shutdown_grace)
    finally:
        await public.cleanup()  # also after a failed start: closes what was opened
        await admin_runner.cleanup()
        access_lines.flush()  # the last turn's lines, if the loop stops before its flush
    log.info("stopped")


async def drain(public: PublicListener, in_flight: InFlight, grace: float) -> None:
    """Let the requests in flight finish, for at most `grace` seconds, then cut the rest.

    The listener closes (new connections are refused), every answer from now on closes its
    connection, and the connections themselves are left alone until nothing is in flight, so
    an upload's body keeps arriving; `cleanup()` then closes what is left.
    """
    in_flight.draining = True
    await public.server.stop_listening()
    if await in_flight.settle(grace):
        return
    cut = await in_flight.cut(CUT_WAIT)
    log.warning("shutdown grace of %ss over: cut %d requests still in flight", grace, cut)


async def _bind(listening: Awaitable[None], setting: str, address: Listen) -> None:
    try:
        await listening
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot listen on {address}: {exc.strerror}") from None


def serve(settings: Settings) -> None:
    connections.limits(settings)  # an impossible connection cap stops the start, before workers
    if settings.workers == 1:
        uvloop.run(run(settings))
    else:
        Supervisor(settings).run()


def _worker_main(settings: Settings, index: int, admin_socket: Path, supervisor: int) -> None:
    from gateway.observability.access_log import configure

    _stop_with(supervisor)
    configure(settings.log.access, settings.log.level)
    logging.getLogger("gateway").info("worker %d starting", index)
    uvloop.run(run(worker_settings(settings, index), admin_socket=admin_socket))


def worker_settings(settings: Settings, index: int) -> Settings:
    """A worker's own settings: its share of the cache's disk in its own subdirectory, since a
    disk tier's index lives in the one process that loaded it."""
    if settings.workers == 1:
        return settings
    cache = dataclasses.replace(
        settings.cache,
        directory=settings.cache.directory / f"worker-{index}",
        disk_bytes=settings.cache.disk_bytes // settings.workers,
    )
    return dataclasses.replace(settings, cache=cache)


PR_SET_PDEATHSIG = 1


def _stop_with(supervisor: int) -> None:
    """A worker must not outlive its supervisor (SIGKILL, the OOM killer): it would go on
    serving the port, with SO_REUSEPORT, beside the next supervisor's workers. On Linux the
    kernel sends the worker SIGTERM (drain, then exit) when the supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the prctl
        raise SystemExit(0)


class Supervisor:
    """N worker processes on one port (SO_REUSEPORT); the supervisor keeps them alive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, BaseProcess] = {}
        self.sockets = Path(tempfile.mkdtemp(prefix="gateway-workers-"))

    def _socket(self, index: int) -> Path:
        return self.sockets / f"worker-{index}.sock"

    def _spawn(self, index: int) -> None:
        self._socket(index).unlink(missing_ok=True)
        process = self.context.Process(
            target=_worker_main,
            args=(self.settings, index, self._socket(index), os.getpid()),
            name=f"gateway-worker-{index}",
        )
        process.start()
        self.workers[index] = process

    def run(self) -> None:
        try:
            uvloop.run(self._run())
        finally:
            shutil.rmtree(self.sockets, ignore_errors=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._signal_all(signal.SIGHUP))
        for index in range(self.settings.workers):
            self._spawn(index)
        fleet = workers.Workers({i: self._socket(i) for i in range(self.settings.workers)})
        admin = web.Application(client_max_size=MAX_BODY)

        async def healthz(request: web.Request) -> web.Response:
            alive = sum(p.is_alive() for p in self.workers.values())
            status = 200 if alive == self.settings.workers else 503
            return web.Response(status=status, text=f"workers alive: {alive}\n")

        async def readyz(request: web.Request) -> web.Response:
            status, text = await fleet.readiness()
            return web.Response(status=status, text=f"{text}\n")

        async def metrics(request: web.Request) -> web.Response:
            body, content_type = await fleet.metrics()
            return web.Response(body=body, headers={"Content-Type": content_type})

        admin.router.add_get("/healthz", healthz)
        admin.router.add_get("/readyz", readyz)
        admin.router.add_get("/metrics", metrics)
        revocations = open_revocation_store(self.settings.revocation.store_url)
        await revocations.open()
        limits = open_limit_store(self.settings.revocation.store_url)  # the workers' counts

        async def reload_keyring() -> tuple[int, str]:
            self._signal_all(signal.SIGHUP)
            return 202, f"reload signalled to {len(self.workers)} workers"

        # With Redis the supervisor publishes a purge and every worker applies it from the
        # stream; without, it hands the purge to each worker itself.
        redis_url = self.settings.revocation.redis_url
        purges = Purges(None, "", FleetPurges(redis_url) if redis_url else None)

        async def purge(wanted: Purge) -> PurgeResult:
            if purges.fleet is not None:
                return await purges.purge(wanted)
            return await fleet.purge(wanted, self.settings.admin_token or "")

        add_admin_api(
            admin,
            self.settings.admin_token,
            AdminActions(
                store=lambda: revocations,
                max_lifetime=self.settings.links.max_lifetime,
                skew=self.settings.links.clock_skew,
                reload_keyring=reload_keyring,
                purge=purge,
                limits=lambda: limits,
            ),
        )
        runner = web.AppRunner(
            admin, access_log=None, handle_signals=False, shutdown_timeout=CLOSE_WAIT
        )
        await runner.setup()
        admin_site = web.TCPSite(
            runner, self.settings.admin_listen.host, self.settings.admin_listen.port
        )
        try:
            await _bind(admin_site.start(), "GATEWAY_ADMIN_LISTEN", self.settings.admin_listen)
            log.info("supervising %d workers on %s", self.settings.workers, self.settings.listen)
            await self._supervise(stop)
        finally:
            self._signal_all(signal.SIGTERM)
            deadline = time.monotonic() + self.settings.timeouts.shutdown_grace + WORKER_EXIT_WAIT
            for index, process in self.workers.items():
                remaining = max(0.0, deadline - time.monotonic())
                await loop.run_in_executor(None, process.join, remaining)
                if process.is_alive():
                    log.error("worker %d still running after the shutdown grace: killed", index)
                    process.kill()
            await fleet.close()
            await runner.cleanup()
            await revocations.close()
            await limits.close()
            await purges.close()

    async def _supervise(self, stop: asyncio.Event) -> None:
        restarts: dict[int, float] = {}
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            for index, process in list(self.workers.items()):
                if not process.is_alive() and not stop.is_set():
                    if time.monotonic() - restarts.get(index, 0) < 5:
                        continue  # crash loop: back off
                    log.error("worker %d exited with %s; restarting", index, process.exitcode)
                    restarts[index] = time.monotonic()
                    self._spawn(index)

    def _signal_all(self, sig: signal.Signals) -> None:
        for process in self.workers.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, sig)
