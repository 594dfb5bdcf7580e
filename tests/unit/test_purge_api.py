"""`POST /admin/purge`, `gateway purge` and the supervisor's hand-over to its workers.

The API and the command run against a real aiohttp admin app on loopback (or Unix sockets, for
workers); what the rest of the gateway does with a purge is a recorder here (the integration
suite runs real gateways).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin_api import MAX_BODY, AdminActions, add_admin_api
from gateway.cache.purge_command import admin_base
from gateway.cache.purges import Purge, PurgeFailed, PurgeResult, Target
from gateway.cli import main
from gateway.revocation.sqlite_store import SQLiteStore
from gateway.settings import Listen
from gateway.workers import Workers

ADMIN_TOKEN = "purge-unit-bearer-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

Client = Callable[..., Awaitable[TestClient[Any, Any]]]
Server = Callable[..., Awaitable[TestServer]]


@dataclass
class Purged:
    """What the API asked the gateway to purge, and what the gateway answers."""

    asked: list[Purge] = field(default_factory=list)
    result: PurgeResult = field(default_factory=lambda: PurgeResult(1, published=True))
    failure: str | None = None

    async def __call__(self, purge: Purge) -> PurgeResult:
        self.asked.append(purge)
        if self.failure is not None:
            raise PurgeFailed(self.failure)
        return self.result


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "revocations.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def purged() -> Purged:
    return Purged()


def admin_app(
    token: str | None, store: SQLiteStore, purge: Callable[[Purge], Awaitable[PurgeResult]] | None
) -> web.Application:
    async def reload_keyring() -> tuple[int, str]:
        return 200, "reloaded"

    app = web.Application(client_max_size=MAX_BODY)
    actions = AdminActions(
        store=lambda: store,
        max_lifetime=604800.0,
        skew=30.0,
        reload_keyring=reload_keyring,
        purge=purge,
    )
    add_admin_api(app, token, actions)
    return app


@pytest.fixture
async def client(
    aiohttp_client: Client, store: SQLiteStore, purged: Purged
) -> TestClient[Any, Any]:
    return await aiohttp_client(admin_app(ADMIN_TOKEN, store, purged))


# --- the admin route -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"key": "/doc.txt"}, Purge(Target.KEY, "/doc.txt")),
        ({"prefix": "/videos/ep1/"}, Purge(Target.PREFIX, "/videos/ep1")),
    ],
    ids=["key", "prefix"],
)
async def test_a_purge_is_handed_to_the_gateway_and_answered_with_what_it_did(
    client: TestClient[Any, Any], purged: Purged, body: dict[str, str], expected: Purge
) -> None:
    response = await client.post("/admin/purge", json=body, headers=AUTH)

    assert response.status == 200
    assert await response.json() == {
        "purged": expected.describe(),
        "dropped": 1,
        "published": True,
    }
    assert purged.asked == [expected]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"url": "/doc.txt"}, 'a JSON object with exactly one of "key" or "prefix"'),
        ({"key": "doc.txt"}, "key: the path must name an object (a request path, such as "),
        ({"key": "/a%2Fb"}, "key: give the decoded path ('/a/b'), not the percent-encoded form"),
    ],
    ids=["unknown-field", "object-key-not-path", "percent-encoded"],
)
async def test_a_malformed_purge_is_refused_with_400_and_reaches_no_cache(
    client: TestClient[Any, Any], purged: Purged, body: dict[str, str], detail: str
) -> None:
    response = await client.post("/admin/purge", json=body, headers=AUTH)

    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "invalid_request"
    assert answer["detail"].startswith(detail)
    assert purged.asked == []


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [(b"{not json", 400, "invalid_json"), (b"x" * (MAX_BODY + 1), 413, "body_too_large")],
    ids=["not-json", "too-large"],
)
async def test_a_body_that_is_no_json_document_is_refused(
    client: TestClient[Any, Any], purged: Purged, raw: bytes, status: int, error: str
) -> None:
    response = await client.post("/admin/purge", data=raw, headers=AUTH)

    assert response.status == status
    assert (await response.json())["error"] == error
    assert purged.asked == []


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x"],
    ids=["missing", "wrong", "wrong-scheme", "longer"],
)
async def test_a_purge_needs_the_admin_bearer_token(
    client: TestClient[Any, Any], purged: Purged, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.post("/admin/purge", json={"key": "/doc.txt"}, headers=headers)

    assert response.status == 401
    assert purged.asked == []


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
async def test_without_an_admin_token_there_is_no_purge_route(
    aiohttp_client: Client, store: SQLiteStore, purged: Purged, token: str | None
) -> None:
    client = await aiohttp_client(admin_app(token, store, purged))

    response = await client.post("/admin/purge", json={"key": "/doc.txt"}, headers=AUTH)

    assert response.status == 404
    assert purged.asked == []


async def test_a_purge_that_did_not_reach_everything_is_answered_503_saying_what(
    client: TestClient[Any, Any], purged: Purged
) -> None:
    purged.failure = "dropped here, but not published to the fleet: Redis is unreachable; retry"

    response = await client.post("/admin/purge", json={"key": "/doc.txt"}, headers=AUTH)

    assert response.status == 503
    assert await response.json() == {"error": "store_unavailable", "detail": purged.failure}


# --- gateway purge ---------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No gateway setting from the machine running the tests."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
async def gateway_admin(
    aiohttp_server: Server, store: SQLiteStore, purged: Purged, environment: pytest.MonkeyPatch
) -> TestServer:
    """A gateway's admin API on loopback, and the settings that name it."""
    server = await aiohttp_server(admin_app(ADMIN_TOKEN, store, purged), host="127.0.0.1")
    environment.setenv("GATEWAY_ADMIN_LISTEN", f"127.0.0.1:{server.port}")
    environment.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    return server


async def command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["purge", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "result", "expected", "said"),
    [
        (
            ["/doc.txt"],
            PurgeResult(1, published=False),
            Purge(Target.KEY, "/doc.txt"),
            "purged key /doc.txt: 1 cached object dropped here\n",
        ),
        (
            ["--prefix", "/videos/ep1/"],
            PurgeResult(3, published=True),
            Purge(Target.PREFIX, "/videos/ep1"),
            "purged prefix /videos/ep1: 3 cached objects dropped here; "
            "published to the fleet (Redis)\n",
        ),
        (
            ["--prefix", "/"],
            PurgeResult(None, published=True),
            Purge(Target.PREFIX, "/"),
            "purged prefix /: each worker drops its own copies; published to the fleet (Redis)\n",
        ),
        (
            ["/doc.txt"],
            PurgeResult(None, published=False),
            Purge(Target.KEY, "/doc.txt"),
            "purged key /doc.txt: this gateway has the cache off\n",
        ),
    ],
    ids=["key", "prefix-published", "supervisor-published", "cache-off"],
)
async def test_the_command_purges_through_the_local_admin_api_and_says_what_happened(
    gateway_admin: TestServer,
    purged: Purged,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    result: PurgeResult,
    expected: Purge,
    said: str,
) -> None:
    purged.result = result

    code, out, err = await command(capsys, *argv)

    assert (code, out) == (0, said)
    assert "gateway: error" not in err  # stderr also has the in-process server's log lines
    assert purged.asked == [expected]


async def test_the_command_reads_the_admin_settings_from_the_config_file(
    gateway_admin: TestServer,
    purged: Purged,
    environment: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    environment.delenv("GATEWAY_ADMIN_LISTEN")
    environment.delenv("GATEWAY_ADMIN_TOKEN")
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nadmin_listen = "127.0.0.1:{gateway_admin.port}"\n'
        f'admin_token = "{ADMIN_TOKEN}"\norigin = "file:///srv"\n'
    )

    code, _, _ = await command(capsys, "/doc.txt", "--config", str(config))

    assert code == 0
    assert purged.asked == [Purge(Target.KEY, "/doc.txt")]


async def test_a_malformed_path_is_refused_before_asking_the_gateway(
    gateway_admin: TestServer, purged: Purged, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await command(capsys, "videos/a.mp4")

    assert (code, out) == (2, "")
    assert "the path must name an object" in err
    assert purged.asked == []


async def test_without_an_admin_token_the_command_says_which_setting_it_needs(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("GATEWAY_ADMIN_LISTEN", "127.0.0.1:9")

    code, _, err = await command(capsys, "/doc.txt")

    assert code == 2
    assert err.startswith("gateway: error: GATEWAY_ADMIN_TOKEN: required")


async def test_a_gateway_that_does_not_answer_is_an_error_naming_where_it_was_asked(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with TcpHole() as port:
        environment.setenv("GATEWAY_ADMIN_LISTEN", f"127.0.0.1:{port}")
        environment.setenv("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)

        code, _, err = await command(capsys, "/doc.txt")

    assert code == 1
    assert f"cannot reach the admin API at http://127.0.0.1:{port}/admin/purge" in err


@pytest.mark.parametrize(
    ("token", "failure", "says"),
    [
        ("not-the-token", None, "the gateway refused the admin token"),
        (ADMIN_TOKEN, "worker 1 did not take it (the others did); retry", "503 (store_unavailable"),
    ],
    ids=["wrong-token", "partial"],
)
async def test_a_refused_purge_is_an_error_that_never_shows_the_token(
    gateway_admin: TestServer,
    purged: Purged,
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    token: str,
    failure: str | None,
    says: str,
) -> None:
    environment.setenv("GATEWAY_ADMIN_TOKEN", token)
    purged.failure = failure

    code, out, err = await command(capsys, "/doc.txt")

    assert (code, out) == (1, "")
    assert says in err
    assert failure is None or failure in err
    assert token not in err


@pytest.mark.parametrize(
    ("listen", "base"),
    [
        (Listen("0.0.0.0", 9090), "http://127.0.0.1:9090"),
        (Listen("::", 9090), "http://[::1]:9090"),
        (Listen("10.0.0.5", 9091), "http://10.0.0.5:9091"),
        (Listen("fd00::5", 9090), "http://[fd00::5]:9090"),
    ],
    ids=["any-ipv4", "any-ipv6", "ipv4", "ipv6"],
)
def test_the_command_asks_the_admin_listener_from_this_host(listen: Listen, base: str) -> None:
    assert admin_base(listen) == base


class TcpHole:
    """A loopback port nothing listens on (bound, never listening: connections are refused)."""

    def __enter__(self) -> int:
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        port: int = self.socket.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.socket.close()


# --- the supervisor hands a purge to every worker ------------------------------------------------


@pytest.fixture
async def worker_sockets(
    tmp_path: Path, store: SQLiteStore
) -> AsyncIterator[tuple[dict[int, Path], list[Purged]]]:
    """Two workers' admin apps on Unix sockets, as the supervisor sees them."""
    runners, sockets, recorders = [], {}, []
    for index, dropped in enumerate([2, 3]):
        recorder = Purged(result=PurgeResult(dropped, published=False))
        runner = web.AppRunner(admin_app(ADMIN_TOKEN, store, recorder))
        await runner.setup()
        sockets[index] = tmp_path / f"w{index}.sock"
        await web.UnixSite(runner, str(sockets[index])).start()
        runners.append(runner)
        recorders.append(recorder)
    yield sockets, recorders
    for runner in runners:
        await runner.cleanup()


async def test_the_supervisor_hands_a_purge_to_every_worker_and_adds_up_what_they_dropped(
    worker_sockets: tuple[dict[int, Path], list[Purged]],
) -> None:
    sockets, recorders = worker_sockets
    workers = Workers(sockets)
    purge = Purge(Target.PREFIX, "/videos")
    try:
        result = await workers.purge(purge, ADMIN_TOKEN)
    finally:
        await workers.close()

    assert result == PurgeResult(5, published=False)
    assert [r.asked for r in recorders] == [[purge], [purge]]


async def test_a_worker_that_does_not_take_the_purge_is_named(
    worker_sockets: tuple[dict[int, Path], list[Purged]], tmp_path: Path
) -> None:
    sockets, recorders = worker_sockets
    workers = Workers({0: sockets[0], 1: tmp_path / "gone.sock", 2: sockets[1]})
    purge = Purge(Target.KEY, "/doc.txt")
    try:
        with pytest.raises(PurgeFailed, match=r"^worker 1 did not take it \(the others did\)"):
            await workers.purge(purge, ADMIN_TOKEN)
    finally:
        await workers.close()

    assert [r.asked for r in recorders] == [[purge], [purge]]
