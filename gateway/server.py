"""Running the gateway: one process, or a supervisor with N workers sharing the public port.

Signals: SIGTERM/SIGINT stop accepting, let in-flight streams finish for up to
`shutdown_grace` seconds, then exit; SIGHUP reloads the keyring. With several workers the
supervisor forwards signals, restarts a worker that dies, and serves the admin listener
(health, readiness and the admin API; each worker follows the revocation store itself, and
per-worker metrics are not exported in this mode: run one worker per container to scrape them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import uvloop
from aiohttp import web

from gateway.admin_api import AdminActions, add_admin_api
from gateway.app import GATEWAY, create_admin_app, create_app
from gateway.revocation import make_store as make_revocation_store
from gateway.settings import Listen, Settings, SettingsError

log = logging.getLogger("gateway")


async def run(
    settings: Settings, *, with_admin: bool = True, on_ready: Callable[[], None] | None = None
) -> None:
    app = create_app(settings)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_grace
    )
    await runner.setup()  # starts the keyring and storage: failures surface here
    admin_runner = None
    try:
        site = web.TCPSite(
            runner, settings.listen.host, settings.listen.port, reuse_port=True, backlog=1024
        )
        await _bind(site, "GATEWAY_LISTEN", settings.listen)
        if with_admin:
            admin_runner = web.AppRunner(
                create_admin_app(app, settings),
                access_log=None,
                handle_signals=False,
                shutdown_timeout=1,
            )
            await admin_runner.setup()
            admin_site = web.TCPSite(
                admin_runner, settings.admin_listen.host, settings.admin_listen.port
            )
            await _bind(admin_site, "GATEWAY_ADMIN_LISTEN", settings.admin_listen)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, app[GATEWAY].keyring.reload)
        log.info(
            "serving %s on %s%s",
            settings.origin,
            settings.listen,
            f", admin on {settings.admin_listen}" if with_admin else "",
        )
        if on_ready is not None:
            on_ready()
        await stop.wait()
        log.info(
            "stopping: no new connections; in-flight requests get %ss", settings.shutdown_grace
        )
    finally:
        await runner.cleanup()
        if admin_runner is not None:
            await admin_runner.cleanup()
    log.info("stopped")


async def _bind(site: web.TCPSite, setting: str, address: Listen) -> None:
    try:
        await site.start()
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot listen on {address}: {exc.strerror}") from None


def serve(settings: Settings) -> None:
    if settings.workers == 1:
        uvloop.run(run(settings))
    else:
        Supervisor(settings).run()


def _worker_main(settings: Settings, index: int) -> None:
    from gateway.observability.access_log import configure

    configure(settings.access_log, settings.log_level)
    logging.getLogger("gateway").info("worker %d starting", index)
    uvloop.run(run(settings, with_admin=False))


class Supervisor:
    """N worker processes on one port (SO_REUSEPORT); the supervisor keeps them alive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, BaseProcess] = {}
        self.stopping = False

    def _spawn(self, index: int) -> None:
        process = self.context.Process(
            target=_worker_main, args=(self.settings, index), name=f"gateway-worker-{index}"
        )
        process.start()
        self.workers[index] = process

    def run(self) -> None:
        uvloop.run(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._signal_all(signal.SIGHUP))
        for index in range(self.settings.workers):
            self._spawn(index)
        admin = web.Application()

        async def healthz(request: web.Request) -> web.Response:
            alive = sum(p.is_alive() for p in self.workers.values())
            status = 200 if alive == self.settings.workers else 503
            return web.Response(status=status, text=f"workers alive: {alive}\n")

        async def readyz(request: web.Request) -> web.Response:
            health = await healthz(request)
            if health.status != 200:
                return health
            listen = self.settings.listen
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(listen.host, listen.port), timeout=2
                )
            except (OSError, TimeoutError):
                return web.Response(status=503, text="workers not accepting yet\n")
            writer.close()
            return web.Response(text="ready\n")

        admin.router.add_get("/healthz", healthz)
        admin.router.add_get("/readyz", readyz)
        revocations = make_revocation_store(self.settings)
        await revocations.open()

        async def reload_keyring() -> tuple[int, str]:
            self._signal_all(signal.SIGHUP)
            return 202, f"reload signalled to {len(self.workers)} workers"

        add_admin_api(
            admin,
            self.settings.admin_token,
            AdminActions(
                store=lambda: revocations,
                max_lifetime=self.settings.max_link_lifetime,
                skew=self.settings.clock_skew,
                reload_keyring=reload_keyring,
            ),
        )
        runner = web.AppRunner(admin, access_log=None, handle_signals=False)
        await runner.setup()
        admin_site = web.TCPSite(
            runner, self.settings.admin_listen.host, self.settings.admin_listen.port
        )
        await _bind(admin_site, "GATEWAY_ADMIN_LISTEN", self.settings.admin_listen)
        log.info("supervising %d workers on %s", self.settings.workers, self.settings.listen)
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
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace + 5
        for process in self.workers.values():
            await loop.run_in_executor(None, process.join, max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        await runner.cleanup()
        await revocations.close()

    def _signal_all(self, sig: signal.Signals) -> None:
        for process in self.workers.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, sig)
