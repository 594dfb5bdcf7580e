"""The operators' HTTP API on the admin listener: bearer-token authentication, revoke, list, reload.

Each test runs the API in a real aiohttp server on loopback with a real SQLite store in a
temporary directory; only the store-failure cases use a store that fails on purpose.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler

from gateway.admin_api import MAX_BODY, AdminActions, add_admin_api
from gateway.keyring import KeyringHolder
from gateway.revocation import Kind, Revocation, RevocationStore
from gateway.revocation.sqlite_store import SQLiteStore
from gateway.revocation.view import RevocationView
from signer import Algorithm, Keyring, Status, new_key, sign_path, token_id
from signer.format import parse_link

ADMIN_TOKEN = "correct-horse-battery-staple"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIFETIME = 7 * 86400.0
SKEW = 30.0
RECENT = int(time.time()) - 3600  # an issue-time bound whose links can still be live
DIGEST = "0123456789abcdef0123456789abcdef"
KEYRING = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE)])
ROUTES = [
    ("POST", "/admin/revocations"),
    ("GET", "/admin/revocations"),
    ("POST", "/admin/keyring/reload"),
]

Client = Callable[..., Awaitable[TestClient[Any, Any]]]


@dataclass
class Calls:
    """What the API asked of the rest of the gateway."""

    revoked: list[Revocation] = field(default_factory=list)
    reloads: int = 0
    reload_reply: tuple[int, str] = (200, "reloaded: generation 2")

    async def reload_keyring(self) -> tuple[int, str]:
        self.reloads += 1
        return self.reload_reply


class FailingStore:
    """A store that is down: every call fails, as a lost Redis or a full disk would."""

    name = "failing"
    connected = False
    resyncs = 0

    async def open(self) -> None: ...

    async def add(self, entry: Revocation) -> None:
        raise ConnectionError("store is down")

    async def entries(self, now: float | None = None) -> list[Revocation]:
        raise ConnectionError("store is down")

    async def prune(self, now: float | None = None) -> int:
        raise ConnectionError("store is down")

    async def follow(self, view: RevocationView) -> None: ...

    async def close(self) -> None: ...

    async def claim_once(self, token_id: str, until: float) -> bool:
        raise ConnectionError("store is down")

    async def renew(self, token_id: str, until: float) -> bool:
        raise ConnectionError("store is down")

    async def release(self, token_id: str) -> None:
        raise ConnectionError("store is down")

    async def record_upload(self, upload_id: str, location: str, until: float) -> None:
        raise ConnectionError("store is down")

    async def abandoned_uploads(self) -> list[tuple[str, str]]:
        raise ConnectionError("store is down")

    async def forget_upload(self, upload_id: str) -> None:
        raise ConnectionError("store is down")


def admin_app(
    token: str | None,
    store: RevocationStore,
    calls: Calls,
    reload_keyring: Callable[[], Awaitable[tuple[int, str]]] | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    actions = AdminActions(
        store=lambda: store,
        max_lifetime=LIFETIME,
        skew=SKEW,
        reload_keyring=reload_keyring or calls.reload_keyring,
        on_revoked=calls.revoked.append,
    )
    add_admin_api(app, token, actions)
    return app


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "revocations.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def client(aiohttp_client: Client, store: SQLiteStore, calls: Calls) -> TestClient[Any, Any]:
    return await aiohttp_client(admin_app(ADMIN_TOKEN, store, calls))


def signed(path: str = "/videos/a.mp4", **options: Any) -> str:
    return sign_path(path, KEYRING, expires_in=300, **options)


async def revoke(client: TestClient[Any, Any], body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/admin/revocations", json=body, headers=AUTH)
    return response.status, await response.json()


async def raw_request(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send bytes the aiohttp client would not; return the status line and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


# -- disabled without a token --------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
async def test_without_a_configured_token_the_routes_do_not_exist(
    aiohttp_client: Client, store: SQLiteStore, calls: Calls, token: str | None
) -> None:
    client = await aiohttp_client(admin_app(token, store, calls))
    for method, path in ROUTES:
        response = await client.request(method, path, json={"sub": "u"}, headers=AUTH)
        assert response.status == 404, (method, path)
    assert calls == Calls()
    assert await store.entries() == []


async def test_without_a_configured_token_other_admin_routes_still_work(
    aiohttp_client: Client, store: SQLiteStore, calls: Calls
) -> None:
    client = await aiohttp_client(admin_app(None, store, calls))
    assert (await client.get("/healthz")).status == 200


# -- authentication ------------------------------------------------------------------------------

BAD_AUTHORIZATION = {
    "missing": None,
    "empty": "",
    "scheme only": "Bearer",
    "scheme and space": "Bearer ",
    "wrong token": "Bearer not-the-token",
    "token prefix": f"Bearer {ADMIN_TOKEN[:-1]}",
    "token with suffix": f"Bearer {ADMIN_TOKEN}x",
    "token with another case": f"Bearer {ADMIN_TOKEN.upper()}",
    "two spaces": f"Bearer  {ADMIN_TOKEN}",
    "no scheme": ADMIN_TOKEN,
    "basic scheme": f"Basic {ADMIN_TOKEN}",
    "token scheme": f"Token {ADMIN_TOKEN}",
    "non-ascii token": "Bearer pässwörd",
}


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
async def test_a_missing_or_wrong_bearer_token_is_refused_with_401_on_every_route(
    client: TestClient[Any, Any], store: SQLiteStore, calls: Calls, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in ROUTES:
        response = await client.request(method, path, json={"sub": "user-42"}, headers=headers)
        assert response.status == 401, (method, path)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.json() == {"error": "unauthorized"}
    assert calls == Calls()
    assert await store.entries() == []


async def test_a_token_that_is_not_utf8_is_refused_with_401(
    client: TestClient[Any, Any], calls: Calls
) -> None:
    assert client.port is not None
    status, _ = await raw_request(
        client.port,
        b"GET /admin/revocations HTTP/1.1\r\nHost: admin\r\n"
        b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n",
    )
    assert status == b"HTTP/1.1 401 Unauthorized"
    assert calls == Calls()


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_scheme_name_is_case_insensitive(
    client: TestClient[Any, Any], scheme: str
) -> None:
    response = await client.get(
        "/admin/revocations", headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"}
    )
    assert response.status == 200


async def test_routes_outside_the_admin_api_need_no_token(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200


async def test_the_refusal_never_echoes_the_expected_token(client: TestClient[Any, Any]) -> None:
    response = await client.get("/admin/revocations", headers={"Authorization": "Bearer x"})
    assert ADMIN_TOKEN not in await response.text()
    assert ADMIN_TOKEN not in str(response.headers)


# -- revoking ------------------------------------------------------------------------------------

SCOPED = {"sub": ("user-42", "user-42"), "key_id": ("k1", "k1"), "prefix": ("/videos/", "/videos")}


@pytest.mark.parametrize(("what", "given", "stored"), [(k, *v) for k, v in SCOPED.items()])
async def test_a_scoped_revocation_covers_links_issued_until_now(
    client: TestClient[Any, Any],
    store: SQLiteStore,
    calls: Calls,
    what: str,
    given: str,
    stored: str,
) -> None:
    start = time.time()
    status, body = await revoke(client, {what: given})
    end = time.time()
    assert status == 201
    [entry] = await store.entries()
    assert (entry.kind, entry.value) == (Kind(what), stored)
    assert entry.before is not None
    assert start <= entry.before <= end
    assert entry.until == entry.before + LIFETIME + SKEW
    assert body == {"revoked": entry.as_dict()}
    assert calls.revoked == [entry]


@pytest.mark.parametrize(("what", "given", "stored"), [(k, *v) for k, v in SCOPED.items()])
async def test_a_scoped_revocation_takes_an_issue_time_bound(
    client: TestClient[Any, Any], store: SQLiteStore, what: str, given: str, stored: str
) -> None:
    before = RECENT
    status, _ = await revoke(client, {what: given, "before": before})
    assert status == 201
    assert await store.entries(now=before) == [
        Revocation(Kind(what), stored, before + LIFETIME + SKEW, before)
    ]


async def test_a_signed_url_is_revoked_by_its_token_id_until_it_expires(
    client: TestClient[Any, Any], store: SQLiteStore, calls: Calls
) -> None:
    target = signed()
    path, _, query = target.partition("?")
    link = parse_link(path, query)
    status, body = await revoke(client, {"url": "https://media.example.com" + target})
    expected = Revocation(Kind.TOKEN, token_id(link.signature), link.claims.expires + SKEW)
    assert status == 201
    assert body == {"revoked": expected.as_dict()}
    assert await store.entries() == [expected]
    assert calls.revoked == [expected]


async def test_the_answer_to_a_url_revocation_never_contains_the_url_or_signature(
    client: TestClient[Any, Any],
) -> None:
    target = signed()
    response = await client.post("/admin/revocations", json={"url": target}, headers=AUTH)
    text = await response.text()
    assert response.status == 201
    assert target not in text
    assert target.rpartition("Signature=")[2] not in text


async def test_a_digest_is_revoked_for_the_longest_lifetime_a_link_may_have(
    client: TestClient[Any, Any], store: SQLiteStore
) -> None:
    start = time.time()
    status, _ = await revoke(client, {"digest": DIGEST})
    [entry] = await store.entries()
    assert status == 201
    assert (entry.kind, entry.value, entry.before) == (Kind.TOKEN, DIGEST, None)
    assert start + LIFETIME + SKEW <= entry.until <= time.time() + LIFETIME + SKEW


async def test_revoking_the_same_thing_twice_keeps_one_entry_covering_both(
    client: TestClient[Any, Any], store: SQLiteStore, calls: Calls
) -> None:
    await revoke(client, {"sub": "u", "before": RECENT})
    await revoke(client, {"sub": "u", "before": RECENT + 100})
    [entry] = await store.entries(now=RECENT)
    assert entry.before == RECENT + 100
    assert len(calls.revoked) == 2


async def test_a_body_that_arrives_in_pieces_is_read_whole(
    aiohttp_client: Client, store: SQLiteStore, calls: Calls
) -> None:
    """The handler must not take the first TCP segment for the whole body."""
    first, rest = b'{"sub": "user', b'-42"}'
    release = asyncio.Event()

    @web.middleware
    async def hold_the_rest(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Let the handler start with only the first piece received, then the client sends the
        # rest: a slow link, made deterministic.
        deadline = time.monotonic() + 5
        while request.content.total_bytes < len(first):
            assert time.monotonic() < deadline, "the first piece never arrived"
            await asyncio.sleep(0.001)
        release.set()
        return await handler(request)

    async def body() -> AsyncIterator[bytes]:
        yield first
        await release.wait()
        yield rest

    app = admin_app(ADMIN_TOKEN, store, calls)
    app.middlewares.insert(0, hold_the_rest)
    client = await aiohttp_client(app)
    response = await client.post(
        "/admin/revocations",
        data=body(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status == 201, await response.text()
    assert [e.value for e in await store.entries()] == ["user-42"]


# -- refusing invalid requests -------------------------------------------------------------------

INVALID_BODIES: dict[str, tuple[bytes, str]] = {
    "not json": (b"{", "JSON"),
    "nested deeper than the parser goes": (b"[" * 30_000 + b"]" * 30_000, "JSON"),
    "objects nested deeper than the parser goes": (
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        "JSON",
    ),
    "not utf-8": (b'{"sub": "\xff"}', "JSON"),
    "empty body": (b"", "JSON object"),
    "json null": (b"null", "JSON object"),
    "json array": (b'[{"sub": "u"}]', "JSON object"),
    "json string": (b'"user-42"', "JSON object"),
    "nothing to revoke": (b"{}", "exactly one of url, digest, sub, key_id, prefix"),
    "only before": (b'{"before": %d}' % RECENT, "exactly one of"),
    "several kinds": (b'{"sub": "u", "key_id": "k1"}', "exactly one of"),
    "unknown field": (b'{"sub": "u", "reason": "abuse"}', "exactly one of"),
    "misspelt kind": (b'{"subject": "u"}', "exactly one of"),
    "number value": (b'{"sub": 42}', "sub: must be a string"),
    "null value": (b'{"key_id": null}', "key_id: must be a string"),
    "list value": (b'{"prefix": ["/a"]}', "prefix: must be a string"),
    "bad digest": (b'{"digest": "ABCDEF"}', "digest:"),
    "short digest": (b'{"digest": "0123456789abcdef"}', "digest:"),
    "not a signed url": (b'{"url": "https://media.example.com/a.mp4"}', "url: not a signed link"),
    "before with url": (b'{"url": "/a.mp4", "before": 1}', "before: applies to"),
    "before with digest": (b'{"digest": "' + DIGEST.encode() + b'", "before": 1}', "before:"),
    "before as text": (b'{"sub": "u", "before": "2026-01-01T00:00:00Z"}', "before:"),
    "before as bool": (b'{"sub": "u", "before": true}', "before:"),
    "before negative": (b'{"sub": "u", "before": -1}', "before:"),
    "before huge": (b'{"sub": "u", "before": 1' + b"0" * 400 + b"}", "before:"),
    "before NaN": (b'{"sub": "u", "before": NaN}', "before:"),
    "empty sub": (b'{"sub": ""}', "sub:"),
    "sub with newline": (b'{"sub": "u\\n"}', "sub:"),
    "sub a lone surrogate": (b'{"sub": "\\ud800"}', "sub:"),
    "bad key id": (b'{"key_id": "k 1"}', "key_id:"),
    "relative prefix": (b'{"prefix": "videos/"}', "prefix:"),
    "prefix with dot-dot": (b'{"prefix": "/videos/../etc"}', "prefix:"),
    "percent-encoded prefix": (b'{"prefix": "/a%20b/"}', "prefix: give the decoded path ('/a b/')"),
}


@pytest.mark.parametrize(("raw", "detail"), INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_an_invalid_request_is_refused_with_400_and_a_detail(
    client: TestClient[Any, Any], store: SQLiteStore, calls: Calls, raw: bytes, detail: str
) -> None:
    response = await client.post(
        "/admin/revocations", data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"] in ("invalid_json", "invalid_request")
    assert detail in body["detail"]
    assert calls.revoked == []
    assert await store.entries(now=0) == []


async def test_a_body_declared_too_large_is_refused_with_413(
    client: TestClient[Any, Any], store: SQLiteStore
) -> None:
    padded = b'{"sub": "u"' + b" " * MAX_BODY + b"}"
    response = await client.post("/admin/revocations", data=padded, headers=AUTH)
    assert response.status == 413
    assert await response.json() == {"error": "body_too_large"}
    assert await store.entries() == []


async def test_a_chunked_body_too_large_is_refused_with_413(
    client: TestClient[Any, Any], store: SQLiteStore
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"sub": "u"'
        for _ in range(MAX_BODY // 1024 + 1):
            yield b" " * 1024
        yield b"}"

    response = await client.post("/admin/revocations", data=body(), headers=AUTH)
    assert response.status == 413
    assert await store.entries() == []


# -- the store failing ---------------------------------------------------------------------------


async def test_a_revocation_the_store_did_not_take_is_answered_503(
    aiohttp_client: Client, calls: Calls
) -> None:
    client = await aiohttp_client(admin_app(ADMIN_TOKEN, FailingStore(), calls))
    status, body = await revoke(client, {"sub": "user-42"})
    assert (status, body) == (503, {"error": "store_unavailable"})
    assert calls.revoked == []


async def test_listing_from_a_failing_store_is_answered_503(
    aiohttp_client: Client, calls: Calls
) -> None:
    client = await aiohttp_client(admin_app(ADMIN_TOKEN, FailingStore(), calls))
    response = await client.get("/admin/revocations", headers=AUTH)
    assert response.status == 503
    assert await response.json() == {"error": "store_unavailable"}


# -- listing -------------------------------------------------------------------------------------


async def test_an_empty_list_is_listed_as_empty(client: TestClient[Any, Any]) -> None:
    response = await client.get("/admin/revocations", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"revocations": []}


async def test_the_list_holds_every_live_entry_of_the_store(
    client: TestClient[Any, Any], store: SQLiteStore
) -> None:
    now = time.time()
    live = [
        Revocation(Kind.TOKEN, DIGEST, now + 60),
        Revocation(Kind.PREFIX, "/videos", now + 60, now),
    ]
    for entry in [*live, Revocation(Kind.SUB, "gone", now - 1, now - 100)]:
        await store.add(entry)
    await revoke(client, {"key_id": "k1"})
    response = await client.get("/admin/revocations", headers=AUTH)
    listed = (await response.json())["revocations"]
    assert response.status == 200
    assert sorted(e["value"] for e in listed) == ["/videos", DIGEST, "k1"]
    assert all(e in listed for e in json.loads(json.dumps([x.as_dict() for x in live])))


# -- keyring reload ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [(200, "reloaded: generation 7"), (422, "reload failed, keeping generation 6 (see the log)")],
)
async def test_a_keyring_reload_answers_with_the_outcome_of_the_reload(
    client: TestClient[Any, Any], calls: Calls, reply: tuple[int, str]
) -> None:
    calls.reload_reply = reply
    response = await client.post("/admin/keyring/reload", headers=AUTH)
    assert (response.status, await response.json()) == (reply[0], {"keyring": reply[1]})
    assert calls.reloads == 1


async def test_a_keyring_file_that_is_not_text_is_a_failed_reload_not_a_crash(
    aiohttp_client: Client, store: SQLiteStore, calls: Calls, tmp_path: Path
) -> None:
    path = tmp_path / "gateway-keyring.json"
    KEYRING.public_export().save(path, public_only=True)
    holder = KeyringHolder(path)

    async def reload_keyring() -> tuple[int, str]:  # as the gateway wires it
        if holder.reload():
            return 200, f"reloaded: generation {holder.generation}"
        return 422, f"reload failed, keeping generation {holder.generation}"

    client = await aiohttp_client(admin_app(ADMIN_TOKEN, store, calls, reload_keyring))
    await asyncio.to_thread(path.write_bytes, b"\xff\xfe not a keyring")
    response = await client.post("/admin/keyring/reload", headers=AUTH)
    assert response.status == 422
    assert (holder.generation, holder.reload_failures) == (1, 1)
    assert [k.id for k in holder.current] == ["k1"]
