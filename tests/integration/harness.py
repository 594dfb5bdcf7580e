"""Running a real gateway in-process against real storage, and talking to it over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway import settings as settings_module
from gateway.app import PublicListener, create_admin_app, create_app
from gateway.services import SERVICES, Services
from gateway.settings import Settings
from signer import Algorithm, Key, Keyring, Status, new_key, sign_path
from tests.servers import S3Server


@dataclass
class Keys:
    """A signing keyring made at test time, and the gateway's export of it."""

    signing: Keyring
    gateway_file: Path

    def sign(self, path: str, **options: object) -> str:
        if "expires_at" not in options:
            options.setdefault("expires_in", 300)
        return sign_path(path, self.signing, **options)  # type: ignore[arg-type]


def make_keys(directory: Path, alg: Algorithm = Algorithm.ED25519) -> Keys:
    signing = Keyring(
        [
            new_key("old", alg, Status.VERIFY),
            new_key("gone", alg, Status.VERIFY),
            new_key("live", alg, Status.ACTIVE),
        ]
    ).retired("gone")
    gateway_file = directory / "gateway-keyring.json"
    signing.public_export().save(gateway_file, public_only=True)
    return Keys(signing, gateway_file)


def gateway_settings(origin: str, keyring: Path, **extra: str) -> Settings:
    environ = {
        "GATEWAY_ORIGIN": origin,
        "GATEWAY_KEYRING": str(keyring),
        "GATEWAY_REVOCATION_DB": str(keyring.parent / "revocations.sqlite3"),
        "GATEWAY_LISTEN": "127.0.0.1:0",
        "GATEWAY_ADMIN_LISTEN": "127.0.0.1:0",
        "GATEWAY_ACCESS_LOG": "false",
    }
    environ.update({f"GATEWAY_{k.upper()}": v for k, v in extra.items()})
    return settings_module.load(environ=environ)


def use_credentials(monkeypatch: pytest.MonkeyPatch, server: S3Server) -> None:
    """Give the gateway `server`'s credentials the way production does: AWS_* variables."""
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)


def s3_gateway_settings(
    monkeypatch: pytest.MonkeyPatch, server: S3Server, origin: str, keyring: Path, **extra: str
) -> Settings:
    """Settings for a gateway in front of `server`, holding its credentials."""
    use_credentials(monkeypatch, server)
    return gateway_settings(origin, keyring, s3_endpoint_url=server.endpoint_url, **extra)


def store_objects(
    server: S3Server, bucket: str, objects: Mapping[str, bytes], content_type: str = "text/plain"
) -> None:
    """Put `objects` (key -> body) into `bucket`, each with `content_type`."""
    client = server.client()
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def link_gateway(
    monkeypatch: pytest.MonkeyPatch,
    server: S3Server,
    directory: Path,
    keyring: Keyring,
    origin: str,
    **extra: str,
) -> AbstractAsyncContextManager[RunningGateway]:
    """A gateway in front of `origin` on `server`, verifying with `keyring`'s public export
    (written to `directory`): what the tests of every link scheme start."""
    path = keyring_file(directory, *keyring)
    return running_gateway(s3_gateway_settings(monkeypatch, server, origin, path, **extra))


def keyring_file(directory: Path, *keys: Key) -> Path:
    """`keys`' public export, as a gateway is given it, in `directory`."""
    path = directory / "gateway-keyring.json"
    Keyring(keys).public_export().save(path, public_only=True)
    return path


@dataclass
class RunningGateway:
    server: PublicListener
    admin: TestServer
    app: web.Application
    session: aiohttp.ClientSession

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    def url(self, target: str) -> URL:
        """`target` is sent byte for byte: no re-encoding by the client."""
        return URL(f"http://127.0.0.1:{self.server.port}{target}", encoded=True)

    async def request(
        self, method: str, target: str, headers: Mapping[str, str] | None = None
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.session.request(method, self.url(target), headers=headers) as response:
            return response, await response.read()

    async def admin_get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin.port}{path}"
        async with self.session.get(url) as response:
            return response.status, await response.text()

    def metric(self, name: str, **labels: str) -> float:
        value = self.services.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def revoke(self, body: Mapping[str, Any]) -> None:
        """Revoke through the admin API (with the gateway's own admin token), as operators do."""
        token = self.services.settings.admin_token
        async with self.session.post(
            f"http://127.0.0.1:{self.admin.port}/admin/revocations",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as answer:
            assert answer.status == 201, await answer.text()


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    app = create_app(settings)
    public = PublicListener(app)
    try:
        await public.start()
        await public.server.listen("127.0.0.1", 0)
        admin = TestServer(create_admin_app(app, settings), host="127.0.0.1")
        await admin.start_server()
        session = aiohttp.ClientSession(auto_decompress=False)
        try:
            yield RunningGateway(public, admin, app, session)
        finally:
            await session.close()
            await admin.close()
    finally:
        await public.cleanup()
