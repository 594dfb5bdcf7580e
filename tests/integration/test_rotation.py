"""Key rotation under load, following the documented procedure with the signer CLI, while the
gateway picks up each new keyring file by itself (no signal, no restart)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path

import pytest

from signer import Keyring, sign_path
from signer.cli import main as signer_main
from tests.integration.harness import RunningGateway, gateway_settings, running_gateway
from tests.polling import eventually

LOADERS = 4
MAX_REQUESTS = 20_000  # a bound, whatever happens


class Load:
    """Clients fetching from a growing pool of valid links until told to stop."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.gateway = gateway
        self.links: list[str] = []
        self.outcomes: Counter[int] = Counter()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._client(i)) for i in range(LOADERS)]

    async def _client(self, index: int) -> None:
        for n in itertools.count(index):
            if self.stop.is_set() or self.total >= MAX_REQUESTS:
                return
            link = self.links[n % len(self.links)]
            response, _ = await self.gateway.request("GET", link)
            self.outcomes[response.status] += 1

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    async def requests_seen(self, more: int) -> None:
        """Let at least `more` requests run at the current stage."""
        target = self.total + more
        await eventually(lambda: self.total >= target or not any(not t.done() for t in self.tasks))

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


def signer(*args: str) -> None:
    assert signer_main(list(args)) == 0


async def test_a_key_rotation_under_load_fails_no_valid_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    (objects / "a.bin").write_bytes(b"x" * 4096)
    keys, exported = str(tmp_path / "keys.json"), str(tmp_path / "gateway-keyring.json")
    signer("keygen", "--keyring", keys, "--key-id", "k1")
    signer("export-public", "--keyring", keys, "--output", exported)

    def sign() -> str:
        return sign_path("/a.bin", Keyring.load(keys), expires_in=600)

    settings = gateway_settings(f"file://{objects}", Path(exported), keyring_watch_interval="0.05")
    async with running_gateway(settings) as gateway:
        holder = gateway.services.keyring
        load = Load(gateway)
        load.links.append(sign())  # before the rotation: k1
        old_links = list(load.links)
        load.start()
        await load.requests_seen(200)

        # 1. a new key, staged as `verify`: gateways accept it before anyone signs with it
        signer("keygen", "--keyring", keys, "--key-id", "k2", "--status", "verify")
        signer("export-public", "--keyring", keys, "--output", exported)
        await eventually(lambda: holder.generation == 2)
        load.links.append(sign())  # during: still k1
        await load.requests_seen(200)

        # 2. backends sign with it; k1 stays `verify` until its last link expires
        signer("activate", "--keyring", keys, "k2")
        signer("export-public", "--keyring", keys, "--output", exported)
        await eventually(lambda: holder.generation == 3)
        load.links.append(sign())  # after: k2
        await load.requests_seen(400)
        await load.finish()

        assert load.outcomes == Counter({200: load.total})
        assert load.total >= 800

        # 3. k1 retired: its links fail from the next reload on, k2's keep working
        signer("retire", "--keyring", keys, "k1")
        signer("export-public", "--keyring", keys, "--output", exported)
        await eventually(lambda: holder.generation == 4)
        for link in old_links:
            response, body = await gateway.request("GET", link)
            assert (response.status, body) == (403, b'{"error":"retired_key"}\n')
        response, _ = await gateway.request("GET", load.links[-1])
        assert response.status == 200
        assert gateway.metric("gateway_keyring_reload_failures_total") == 0
    assert "k2" in capsys.readouterr().out  # the CLI said what it did


async def test_an_invalid_keyring_file_keeps_the_old_keyring(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    objects.mkdir()
    (objects / "a.bin").write_bytes(b"data")
    keys, exported = str(tmp_path / "keys.json"), tmp_path / "gateway-keyring.json"
    signer("keygen", "--keyring", keys, "--key-id", "k1")
    signer("export-public", "--keyring", keys, "--output", str(exported))
    link = sign_path("/a.bin", Keyring.load(keys), expires_in=600)
    settings = gateway_settings(f"file://{objects}", exported, keyring_watch_interval="0.05")
    async with running_gateway(settings) as gateway:
        broken = tmp_path / "broken.json"
        broken.write_text('{"keys": [')
        broken.replace(exported)  # an atomic swap to an invalid file

        await eventually(lambda: gateway.metric("gateway_keyring_reload_failures_total") == 1)

        assert gateway.services.keyring.generation == 1
        response, _ = await gateway.request("GET", link)
        assert response.status == 200
