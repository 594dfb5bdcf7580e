"""No signature, signed query, key material or admin token ever reaches a log, at any level."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from gateway.app import PublicListener
from gateway.observability.access_log import configure
from signer import Algorithm, Keyring, Status, sign_path
from signer.format import encode_payload
from tests.integration.conftest import PRIVATE_BUCKET
from tests.integration.harness import (
    Keys,
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
    s3_gateway_settings,
)
from tests.polling import eventually
from tests.redis_server import redis_server
from tests.servers import S3Server

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "admin-bearer-that-must-not-be-logged"


@pytest.mark.parametrize("alg", list(Algorithm), ids=lambda a: a.value)
async def test_nothing_secret_appears_in_any_log_line(
    tmp_path: Path,
    alg: Algorithm,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    (objects / "doc.txt").write_bytes(b"document")
    keys = make_keys(tmp_path, alg)
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    valid = keys.sign("/doc.txt", expires_in=600, sub="user-1")
    revoked = keys.sign("/doc.txt", expires_in=600, sub="user-2")
    forged = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    gone = next(k for k in keys.signing if k.id == "gone")
    retired_key = sign_path(
        "/doc.txt", Keyring([replace(gone, status=Status.ACTIVE)]), expires_in=600
    )
    missing = keys.sign("/nothing-here.txt", expires_in=600)
    upload = keys.sign("/up/new.txt", expires_in=600, method="PUT", one_time=True, max_bytes=9)
    targets = [valid, revoked, forged, retired_key, missing, valid + "&extra=1", valid + "%zz"]
    settings = gateway_settings(
        f"file://{objects}",
        keys.gateway_file,
        admin_token=ADMIN_TOKEN,
        access_log="true",
        log_level="DEBUG",
    )
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with running_gateway(settings) as gateway:
        admin = f"http://127.0.0.1:{gateway.admin.port}"
        async with gateway.session.post(
            f"{admin}/admin/revocations", json={"url": revoked}, headers=bearer
        ) as answer:
            assert answer.status == 201
        async with gateway.session.post(
            f"{admin}/admin/revocations", json={"url": valid}, headers={"Authorization": "Bearer x"}
        ) as answer:
            assert answer.status == 401
        async with gateway.session.post(f"{admin}/admin/keyring/reload", headers=bearer) as answer:
            assert answer.status == 200
        statuses = [(await gateway.request("GET", target))[0].status for target in targets]
        for body in (b"0123456789", b"012345678", b"again"):  # too large, stored, revoked
            async with gateway.session.put(gateway.url(upload), data=body) as answer:
                statuses.append(answer.status)
    targets.append(upload)
    assert statuses[:5] == [200, 403, 403, 403, 404]
    assert statuses[-3:] == [413, 201, 403]

    logged = caplog.text + "\n".join(capsys.readouterr())
    assert '"path":"/doc.txt"' in logged  # the access log did run: this test can fail
    secrets = [ADMIN_TOKEN]
    for target in targets:
        query = target.partition("?")[2]
        secrets.append(query)
        secrets.append(query.rpartition("Signature=")[2][:40])
    for key in keys.signing:
        if key.secret is not None:
            secrets += [
                base64.urlsafe_b64encode(key.secret).decode().rstrip("="),
                base64.b64encode(key.secret).decode().rstrip("="),
                key.secret.hex(),
            ]
    for secret in secrets:
        assert secret not in logged


# --- raw inputs the parsers refuse (the public listener's, aiohttp's for admin), and what is logged

PUBLIC_BEARER = "public-bearer-that-must-not-be-logged"
SESSION_COOKIE = "session-cookie-that-must-not-be-logged"
REDIS_PASSWORD = "redis-password-that-must-not-be-logged"
SESSION_TOKEN = "aws-session-token-that-must-not-be-logged"
PAD = "x" * 9000  # past the 8190-byte limit for one header line (both listeners)


@dataclass(frozen=True)
class Probe:
    listener: str  # "public" or "admin"
    request: str
    secret: str


def probes(link: str) -> dict[str, Probe]:
    path, _, query = link.partition("?")
    signature = query.rpartition("Signature=")[2]
    payload = encode_payload(query)

    def public(head: str, secret: str) -> Probe:
        return Probe("public", f"{head}\r\nHost: gw\r\n\r\n", secret)

    def admin(header: str, secret: str) -> Probe:
        request = f"GET /admin/revocations HTTP/1.1\r\nHost: gw\r\n{header}\r\n\r\n"
        return Probe("admin", request, secret)

    return {
        "a space in the query": public(f"GET {path}?title=My Video&{query} HTTP/1.1", signature),
        "a control character in the token cookie": public(
            f"GET {path} HTTP/1.1\r\nCookie: EdgeToken={payload}\x01", payload
        ),
        "an over-long cookie line": public(
            f"GET {path} HTTP/1.1\r\nCookie: session={SESSION_COOKIE}; pad={PAD}", SESSION_COOKIE
        ),
        "an over-long token cookie": public(
            f"GET {path} HTTP/1.1\r\nCookie: EdgeToken={payload}; pad={PAD}", payload[:80]
        ),
        "an over-long Authorization line": public(
            f"GET {path} HTTP/1.1\r\nAuthorization: Bearer {PUBLIC_BEARER} {PAD}", PUBLIC_BEARER
        ),
        "a control character in the admin bearer": admin(
            f"Authorization: Bearer {ADMIN_TOKEN}\x01", ADMIN_TOKEN
        ),
        "an over-long admin Authorization line": admin(
            f"Authorization: Bearer {ADMIN_TOKEN} {PAD}", ADMIN_TOKEN
        ),
    }


def leaked(secret: str, logged: str, window: int = 16) -> list[str]:
    """Every 16-character piece of `secret` that appears in the logs."""
    size = min(window, len(secret))
    pieces = {secret[i : i + size] for i in range(len(secret) - size + 1)}
    return sorted(piece for piece in pieces if piece in logged)


async def exchange(server: TestServer | PublicListener, request: bytes) -> bytes:
    """Send `request` as raw bytes and read until the gateway closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture(scope="module")
def s3_keys(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Keys:
    s3_server.client().put_object(Bucket=PRIVATE_BUCKET, Key="logs/doc.txt", Body=b"document")
    return make_keys(tmp_path_factory.mktemp("log-keys"))


@pytest.fixture
async def s3_gateway(
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    s3_keys: Keys,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],  # first, so that the access log writes into it
) -> AsyncIterator[RunningGateway]:
    """A gateway in front of SeaweedFS, every logger at DEBUG, the access log on."""
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    settings = s3_gateway_settings(
        monkeypatch,
        s3_server,
        f"s3://{PRIVATE_BUCKET}/logs",
        s3_keys.gateway_file,
        admin_token=ADMIN_TOKEN,
        access_log="true",
        log_level="DEBUG",
    )
    async with running_gateway(settings) as gateway:
        yield gateway


def all_logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    return caplog.text + "\n".join(capsys.readouterr())


@pytest.mark.parametrize("name", list(probes("/p?Signature=x")))
async def test_a_request_the_parser_refuses_is_logged_without_its_secrets(
    name: str,
    s3_gateway: RunningGateway,
    s3_keys: Keys,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    probe = probes(s3_keys.sign("/doc.txt", expires_in=600))[name]
    server = s3_gateway.server if probe.listener == "public" else s3_gateway.admin
    answer = await exchange(server, probe.request.encode("latin-1"))
    assert re.match(rb"HTTP/1\.[01] (400|431) ", answer)  # refused, never a 500
    logger = "gateway.http" if probe.listener == "public" else "aiohttp.server"
    refusals = [r for r in caplog.records if r.name == logger]
    assert refusals, "no parser error was logged: this test could not fail"
    assert all(r.exc_info is None for r in refusals)  # no traceback to echo the input
    assert leaked(probe.secret, all_logs(caplog, capsys)) == []


@pytest.mark.parametrize(
    ("target", "logged_path"),
    [
        ("/TOKEN={payload}/doc.txt", "/TOKEN=<redacted>/doc.txt"),
        ("/Token={payload}/doc.txt", "/Token=<redacted>/doc.txt"),
        ("/tok%65n={payload}/doc.txt", "/tok%65n=<redacted>/doc.txt"),
        ("/token={other}/token={payload}/doc.txt", "/token=<redacted>/token=<redacted>/doc.txt"),
    ],
)
async def test_every_token_segment_is_redacted_from_the_access_log(
    target: str,
    logged_path: str,
    s3_gateway: RunningGateway,
    s3_keys: Keys,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = encode_payload(s3_keys.sign("/doc.txt", expires_in=600).partition("?")[2])
    other = encode_payload(s3_keys.sign("/other.txt", expires_in=600).partition("?")[2])
    raw = target.format(payload=payload, other=other)
    request = f"GET {raw} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    answer = await exchange(s3_gateway.server, request.encode())
    assert answer.startswith((b"HTTP/1.1 403 ", b"HTTP/1.1 404 "))
    logged = all_logs(caplog, capsys)
    assert f'"path":"{logged_path}"' in logged
    assert leaked(payload, logged) == []


@pytest.mark.parametrize(
    "template",
    [
        "redis://:{password}@127.0.0.1:{port}/0",
        "redis://default:{password}@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?password={password}",
        "redis://127.0.0.1:{port}/0?socket_timeout=9&password={password}",
        "redis://127.0.0.1:{port}?db=0&password={password}",
    ],
)
async def test_a_redis_password_never_reaches_the_logs(
    template: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    keys = make_keys(tmp_path)
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    with redis_server(tmp_path) as redis:
        setup = Redis(port=redis.port)
        await setup.config_set("requirepass", REDIS_PASSWORD)
        await setup.aclose()
        url = template.format(password=REDIS_PASSWORD, port=redis.port)
        settings = gateway_settings(
            f"file://{objects}", keys.gateway_file, redis_url=url, log_level="DEBUG"
        )
        async with running_gateway(settings) as gateway:
            await eventually(lambda: gateway.metric("gateway_revocation_resyncs_total") >= 1)
    logged = all_logs(caplog, capsys)
    assert "revocation view resynced" in logged  # the line that names the store did run
    assert REDIS_PASSWORD not in logged


@pytest.mark.parametrize("session_token", [None, SESSION_TOKEN])
async def test_botocore_logs_no_credentials_at_debug(
    session_token: str | None,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    s3_keys: Keys,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(True, "DEBUG")
    caplog.set_level(logging.DEBUG)
    settings = s3_gateway_settings(
        monkeypatch, s3_server, f"s3://{PRIVATE_BUCKET}/logs", s3_keys.gateway_file
    )
    if session_token is not None:  # SeaweedFS refuses it, after botocore sent it
        monkeypatch.setenv("AWS_SESSION_TOKEN", session_token)
    async with running_gateway(settings) as gateway:
        status, _ = await gateway.admin_get("/readyz")  # HeadBucket, through botocore
    assert status == (200 if session_token is None else 503)
    logged = all_logs(caplog, capsys)
    assert "AWS4-HMAC-SHA256" not in logged  # neither a SigV4 Authorization nor a StringToSign
    for secret in (s3_server.secret_key, session_token):
        if secret is not None:
            assert leaked(secret, logged) == []
