"""Revocation on one node (SQLite) and across a fleet (a real Redis-protocol server).

Gateways here serve a local directory: what is under test is the revocation path, which is the
same whatever the storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.cli import main as gateway_main
from gateway.revocation import Kind, Revocation
from gateway.revocation.redis_store import RedisStore
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
)
from tests.polling import eventually
from tests.redis_server import RedisServer, redis_server
from tests.servers import free_port

ADMIN_TOKEN = "test-admin-bearer"


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    (root / "videos" / "ep1").mkdir(parents=True)
    (root / "videos" / "ep1" / "a.ts").write_bytes(b"segment a")
    (root / "videos" / "ep10").mkdir(parents=True)
    (root / "videos" / "ep10" / "a.ts").write_bytes(b"other episode")
    (root / "doc.txt").write_bytes(b"document")
    return root


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


async def status(gateway: RunningGateway, target: str) -> int:
    response, _ = await gateway.request("GET", target)
    return response.status


@contextlib.asynccontextmanager
async def fleet(
    count: int, objects: Path, keys: Keys, redis_url: str, *, synced: bool = True, **extra: str
) -> AsyncIterator[list[RunningGateway]]:
    """`count` gateways on one Redis; with `synced`, each once its view of the list is loaded
    (it fails closed until then, and on a busy machine the first sync may outlast the start)."""
    async with contextlib.AsyncExitStack() as stack:
        gateways = []
        for _ in range(count):
            settings = gateway_settings(
                f"file://{objects}", keys.gateway_file, redis_url=redis_url, **extra
            )
            gateway = await stack.enter_async_context(running_gateway(settings))
            if synced:
                view = gateway.services.revocations
                await eventually(lambda view=view: view.loaded, within=30)  # type: ignore[misc]
            gateways.append(gateway)
        yield gateways


class Relay:
    """A TCP relay between gateways and Redis that a test can cut and restore: a network
    partition for one gateway, while Redis itself keeps running."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink, (writer, up_writer)))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in both:
                writer.close()


# --- one node: the embedded SQLite store ----------------------------------------------------


async def test_a_revoked_link_is_refused_with_the_reason_revoked(objects: Path, keys: Keys) -> None:
    link = keys.sign("/doc.txt", expires_in=600)
    settings = gateway_settings(f"file://{objects}", keys.gateway_file, admin_token=ADMIN_TOKEN)
    async with running_gateway(settings) as gateway:
        assert await status(gateway, link) == 200
        async with gateway.session.post(
            f"http://127.0.0.1:{gateway.admin.port}/admin/revocations",
            json={"url": link},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as answer:
            assert answer.status == 201

        response, body = await gateway.request("GET", link)

        assert response.status == 403
        assert json.loads(body) == {"error": "revoked"}
        assert (
            gateway.metric("gateway_requests_total", method="GET", status="403", reason="revoked")
            == 1
        )


@pytest.mark.parametrize(
    ("revoke", "revoked", "untouched"),
    [
        (["--sub", "user-42"], "/doc.txt?sub=user-42", "/doc.txt?sub=user-7"),
        (["--prefix", "/videos/ep1/"], "/videos/ep1/a.ts", "/videos/ep10/a.ts"),
        (["--prefix", "/videos/ep1"], "/videos/ep1/a.ts", "/videos/ep10/a.ts"),
    ],
    ids=["sub", "prefix-with-slash", "prefix-without-slash"],
)
async def test_the_revoke_command_reaches_a_running_gateway(
    objects: Path,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    revoke: list[str],
    revoked: str,
    untouched: str,
) -> None:
    def link(spec: str) -> str:
        path, _, sub = spec.partition("?sub=")
        return keys.sign(path, expires_in=600, sub=sub or None)

    settings = gateway_settings(f"file://{objects}", keys.gateway_file)
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(settings.revocation.db))
    async with running_gateway(settings) as gateway:
        assert await status(gateway, link(revoked)) == 200

        assert await asyncio.to_thread(gateway_main, ["revoke", *revoke]) == 0

        await poll_until(gateway, link(revoked), 403)
        assert await status(gateway, link(untouched)) == 200
    assert "revoked" in capsys.readouterr().out


async def test_links_issued_after_a_subject_revocation_work_again(
    objects: Path, keys: Keys
) -> None:
    now = time.time()
    old = keys.sign("/doc.txt", expires_in=600, sub="u1", now=now - 100)
    new = keys.sign("/doc.txt", expires_in=600, sub="u1", now=now)
    settings = gateway_settings(f"file://{objects}", keys.gateway_file)
    async with running_gateway(settings) as gateway:
        gateway.services.revocations.apply(Revocation(Kind.SUB, "u1", now + 10_000, now - 50))

        assert await status(gateway, old) == 403
        assert await status(gateway, new) == 200


DEEP_PREFIX = "/videos/ep10/" + "s/" * 400 + "t"  # 813 bytes: still a valid key below it


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/videos/ep10/a.ts", (200, b"other episode")),
        (DEEP_PREFIX + "/x.ts", (403, b'{"error":"revoked"}\n')),
        ("/videos/ep10/" + "s/" * 3900 + "a.ts", (400, b'{"error":"invalid_path"}\n')),
    ],
    ids=["untouched", "under-a-deep-revoked-prefix", "too-long-for-a-key"],
)
async def test_deep_paths_under_a_prefix_link_are_judged_with_prefix_revocations_in_place(
    objects: Path, keys: Keys, path: str, expected: tuple[int, bytes]
) -> None:
    query = keys.sign("/videos/any", expires_in=600, prefix="/videos/").partition("?")[2]
    settings = gateway_settings(f"file://{objects}", keys.gateway_file)
    async with running_gateway(settings) as gateway:
        before = time.time() + 60
        for prefix in ("/videos/ep1", DEEP_PREFIX):
            gateway.services.revocations.apply(
                Revocation(Kind.PREFIX, prefix, before + 10_000, before)
            )
        response, body = await gateway.request("GET", f"{path}?{query}")
    assert (response.status, body) == expected


async def test_revocations_survive_a_gateway_restart(objects: Path, keys: Keys) -> None:
    link = keys.sign("/doc.txt", expires_in=600)
    settings = gateway_settings(f"file://{objects}", keys.gateway_file, admin_token=ADMIN_TOKEN)
    async with (
        running_gateway(settings) as first,
        first.session.post(
            f"http://127.0.0.1:{first.admin.port}/admin/revocations",
            json={"url": link},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as answer,
    ):
        assert answer.status == 201

    async with running_gateway(settings) as second:
        assert await status(second, link) == 403


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x"],
    ids=["missing", "wrong", "wrong-scheme", "longer"],
)
async def test_the_admin_api_refuses_a_missing_or_wrong_bearer_token(
    objects: Path, keys: Keys, authorization: str | None
) -> None:
    link = keys.sign("/doc.txt", expires_in=600)
    settings = gateway_settings(f"file://{objects}", keys.gateway_file, admin_token=ADMIN_TOKEN)
    headers = {"Authorization": authorization} if authorization else {}
    async with running_gateway(settings) as gateway:
        async with gateway.session.post(
            f"http://127.0.0.1:{gateway.admin.port}/admin/revocations",
            json={"url": link},
            headers=headers,
        ) as answer:
            assert answer.status == 401
        assert await status(gateway, link) == 200
        assert len(gateway.services.revocations) == 0


async def test_without_an_admin_token_the_admin_api_does_not_exist(
    objects: Path, keys: Keys
) -> None:
    settings = gateway_settings(f"file://{objects}", keys.gateway_file)
    async with (
        running_gateway(settings) as gateway,
        gateway.session.post(
            f"http://127.0.0.1:{gateway.admin.port}/admin/revocations", json={"sub": "u"}
        ) as answer,
    ):
        assert answer.status == 404


async def test_the_admin_api_is_not_on_the_public_port(objects: Path, keys: Keys) -> None:
    settings = gateway_settings(f"file://{objects}", keys.gateway_file, admin_token=ADMIN_TOKEN)
    async with running_gateway(settings) as gateway:
        response, _ = await gateway.request(
            "POST", "/admin/revocations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status in (403, 405)
        assert len(gateway.services.revocations) == 0


# --- a fleet on Redis --------------------------------------------------------------------------


async def test_a_revocation_reaches_every_gateway_of_the_fleet(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    link = keys.sign("/doc.txt", expires_in=600)
    async with fleet(3, objects, keys, redis.url) as gateways:
        for gateway in gateways:
            assert await status(gateway, link) == 200
        writer = RedisStore(redis.url)

        await writer.add(Revocation(Kind.TOKEN, token_of(link), 2_000_000_000.0))
        await writer.close()

        for gateway in gateways:
            await poll_until(gateway, link, 403)


async def test_a_gateway_resyncs_what_it_missed_while_cut_off(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    link = keys.sign("/doc.txt", expires_in=600, sub="user-9")
    relay = Relay(redis.port)
    await relay.start()
    async with fleet(1, objects, keys, relay.url, revocation_max_staleness="1") as [gateway]:
        assert await status(gateway, link) == 200
        assert (await gateway.admin_get("/readyz"))[0] == 200

        await relay.cut()
        await eventually(lambda: not gateway.services.revocation_store.connected)
        writer = RedisStore(redis.url)
        await writer.add(Revocation(Kind.SUB, "user-9", 2_000_000_000.0, 1_999_000_000.0))
        await writer._client.xtrim(writer.events_key, maxlen=0)  # only a full resync can tell
        await writer.close()
        await poll_admin(gateway, "/readyz", 503)  # stale beyond its bound: not ready
        assert await status(gateway, link) == 200  # it cannot know yet

        await relay.start()

        await poll_until(gateway, link, 403)
        await poll_admin(gateway, "/readyz", 200)
        assert gateway.metric("gateway_revocation_resyncs_total") >= 2
    await relay.cut()


async def test_a_redis_restart_loses_nothing_the_fleet_enforces(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    before = keys.sign("/doc.txt", expires_in=600)
    after = keys.sign("/videos/ep1/a.ts", expires_in=600)
    async with fleet(2, objects, keys, redis.url) as gateways:
        writer = RedisStore(redis.url)
        await writer.add(Revocation(Kind.TOKEN, token_of(before), 2_000_000_000.0))
        for gateway in gateways:
            await poll_until(gateway, before, 403)

        redis.restart()  # no persistence: Redis comes back empty

        for gateway in gateways:
            await eventually(functools.partial(reconnected_and_resynced, gateway))
        restored = RedisStore(redis.url)
        assert [e.value for e in await restored.entries()] == [token_of(before)]
        await restored.add(Revocation(Kind.TOKEN, token_of(after), 2_000_000_000.0))
        await restored.close()
        for gateway in gateways:
            assert await status(gateway, before) == 403
            await poll_until(gateway, after, 403)
        await writer.close()


async def test_a_gateway_started_while_redis_is_down_is_not_ready_until_it_syncs(
    objects: Path, keys: Keys, redis: RedisServer
) -> None:
    link = keys.sign("/doc.txt", expires_in=600)
    writer = RedisStore(redis.url)
    await writer.add(Revocation(Kind.TOKEN, token_of(link), 2_000_000_000.0))
    await writer.close()
    relay = Relay(redis.port)  # not started: Redis is unreachable through it
    async with fleet(1, objects, keys, relay.url, synced=False, revocation_max_staleness="1") as [
        gateway
    ]:
        assert (await gateway.admin_get("/readyz"))[0] == 503

        await relay.start()

        await poll_admin(gateway, "/readyz", 200)
        assert await status(gateway, link) == 403
    await relay.cut()


# --- helpers -----------------------------------------------------------------------------------


def token_of(link: str) -> str:
    from gateway.revocation.entries import for_url

    return for_url(link, skew=0).value


async def poll_until(gateway: RunningGateway, link: str, expected: int, within: float = 10) -> None:
    """Ask until the gateway answers `expected` (a deadline, not a guessed sleep)."""
    async with asyncio.timeout(within):
        while True:
            if await status(gateway, link) == expected:
                return
            await asyncio.sleep(0.01)


async def poll_admin(gateway: RunningGateway, path: str, expected: int, within: float = 10) -> None:
    async with asyncio.timeout(within):
        while True:
            if (await gateway.admin_get(path))[0] == expected:
                return
            await asyncio.sleep(0.02)


def reconnected_and_resynced(gateway: RunningGateway) -> bool:
    return (
        gateway.services.revocation_store.connected
        and gateway.metric("gateway_revocation_resyncs_total") >= 2
    )


async def test_concurrent_revocations_of_one_subject_keep_the_widest(redis: RedisServer) -> None:
    writers = [RedisStore(redis.url) for _ in range(8)]
    bounds = [1_999_000_000.0 + i for i in range(8)]
    await asyncio.gather(
        *(
            writer.add(Revocation(Kind.SUB, "user-1", 2_000_000_000.0, before))
            for writer, before in zip(writers, bounds, strict=True)
        )
    )
    [entry] = await writers[0].entries()
    assert entry.before == max(bounds)
    for writer in writers:
        await writer.close()
