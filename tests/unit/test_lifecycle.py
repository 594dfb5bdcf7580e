"""Start-up and shut-down of the gateway's resources: a failed start releases what it opened.

Real parts throughout (the SQLite revocation store, aiohttp's runner, sockets); the only thing
arranged is the failure itself: no AWS credentials, an unreadable keyring, a port in use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import server
from gateway import settings as settings_module
from gateway.app import PublicListener, create_app
from gateway.settings import Settings, SettingsError
from gateway.storage import StorageError
from signer import Algorithm, Keyring, KeyringError, Status, new_key

NO_CREDENTIALS = "no AWS credentials found"


def db_descriptors(db: Path) -> int:
    """This process's open descriptors on the SQLite file `db` and its -wal and -shm files."""
    names = {str(db), f"{db}-wal", f"{db}-shm"}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") in names
        except OSError:
            continue  # closed between the listing and the read (the listing's own descriptor)
    return count


def descriptors() -> set[str]:
    """What every open descriptor of this process points at, by number."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue
    return found


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture
def keyring_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway-keyring.json"
    keyring = Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE)])
    keyring.public_export().save(path, public_only=True)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "revocations.sqlite3"


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    root.mkdir()
    return root


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere botocore looks: environment, files, instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254


def load(origin: str, keyring: Path, db: Path, **extra: str) -> Settings:
    environ = {
        "GATEWAY_ORIGIN": origin,
        "GATEWAY_KEYRING": str(keyring),
        "GATEWAY_REVOCATION_DB": str(db),
        "GATEWAY_LISTEN": "127.0.0.1:0",
        "GATEWAY_ADMIN_LISTEN": "127.0.0.1:0",
        "GATEWAY_ACCESS_LOG": "false",
        **{f"GATEWAY_{k.upper()}": v for k, v in extra.items()},
    }
    return settings_module.load(environ=environ)


def s3_origin(keyring: Path, db: Path, **extra: str) -> Settings:
    """An `s3://` origin at a loopback endpoint nothing listens on: start-up never reaches it."""
    endpoint = {"s3_endpoint_url": "http://127.0.0.1:9", "s3_region": "us-east-1"}
    return load("s3://private", keyring, db, **endpoint, **extra)


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A loopback port held by a listening socket without SO_REUSEPORT, so no one can share it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
async def loop_has_listened() -> None:
    """libuv opens one spare descriptor (on /dev/null, for running out of descriptors) at a
    loop's first listen and keeps it for the loop's life: take it before counting."""
    first = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    first.close()
    await first.wait_closed()


# --- the counters these tests rely on see what they claim to see -------------------------------


async def test_a_started_gateway_holds_its_revocation_db_open(
    keyring_file: Path, db: Path, objects: Path
) -> None:
    runner = PublicListener(create_app(load(f"file://{objects}", keyring_file, db)))
    await runner.start()
    try:
        assert db_descriptors(db) == 3  # the database, its -wal and its -shm
    finally:
        await runner.cleanup()
    assert db_descriptors(db) == 0


# --- a failed start-up releases what was already opened ---------------------------------------


@pytest.mark.usefixtures("no_aws_credentials")
async def test_no_aws_credentials_fails_start_up_and_closes_the_revocation_db(
    keyring_file: Path, db: Path
) -> None:
    runner = PublicListener(create_app(s3_origin(keyring_file, db)))
    assert db_descriptors(db) == 0
    with pytest.raises(StorageError, match=NO_CREDENTIALS):
        await runner.start()
    assert await asyncio.to_thread(db.exists)  # opened before storage failed
    await runner.cleanup()
    assert db_descriptors(db) == 0
    assert other_tasks() == set()  # the follower and the keyring watcher were stopped


@pytest.mark.usefixtures("no_aws_credentials")
async def test_no_aws_credentials_leaves_no_descriptor_open(keyring_file: Path, db: Path) -> None:
    runner = PublicListener(create_app(s3_origin(keyring_file, db)))
    before = descriptors()
    with pytest.raises(StorageError):
        await runner.start()
    await runner.cleanup()
    assert descriptors() == before


@pytest.fixture(
    params=[b"not json", b'{"keys": []}', b"\xff\xfe"], ids=["not-json", "no-keys", "not-utf8"]
)
def broken_keyring(keyring_file: Path, request: pytest.FixtureRequest) -> Path:
    keyring_file.write_bytes(request.param)
    return keyring_file


async def test_a_keyring_that_fails_to_load_fails_start_up_and_leaves_nothing_open(
    broken_keyring: Path, db: Path, objects: Path
) -> None:
    runner = PublicListener(create_app(load(f"file://{objects}", broken_keyring, db)))
    before = descriptors()
    with pytest.raises(KeyringError):
        await runner.start()
    await runner.cleanup()
    assert descriptors() == before
    assert db_descriptors(db) == 0
    assert other_tasks() == set()


# --- gateway.server.run: a port in use --------------------------------------------------------


@pytest.mark.usefixtures("loop_has_listened")
@pytest.mark.parametrize("origin", ["file", "s3"])
@pytest.mark.parametrize("taken", ["listen", "admin_listen"])
async def test_run_releases_everything_when_a_port_is_in_use(
    keyring_file: Path,
    db: Path,
    objects: Path,
    occupied_port: int,
    monkeypatch: pytest.MonkeyPatch,
    origin: str,
    taken: str,
) -> None:
    listen = {taken: f"127.0.0.1:{occupied_port}"}
    if origin == "s3":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLIFECYCLETEST")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lifecycle-test-secret")
        settings = s3_origin(keyring_file, db, **listen)
    else:
        settings = load(f"file://{objects}", keyring_file, db, **listen)
    before = descriptors()
    message = f"GATEWAY_{taken.upper()}: cannot listen on 127.0.0.1:{occupied_port}"
    with pytest.raises(SettingsError, match=message):
        await server.run(settings)
    assert await asyncio.to_thread(db.exists)  # every resource had been opened before the bind
    assert db_descriptors(db) == 0
    assert descriptors() == before  # listening sockets included
    assert other_tasks() == set()


def test_each_worker_keeps_its_share_of_the_disk_cache_in_its_own_directory(
    tmp_path: Path,
) -> None:
    from gateway.server import worker_settings
    from tests.integration.harness import gateway_settings, make_keys

    keys = make_keys(tmp_path)
    settings = gateway_settings(
        f"file://{tmp_path}",
        keys.gateway_file,
        workers="3",
        cache="true",
        cache_dir=str(tmp_path / "cache"),
        cache_disk_bytes="3000",
    )

    shares = [worker_settings(settings, index).cache for index in range(3)]

    assert [share.directory for share in shares] == [
        tmp_path / "cache" / f"worker-{index}" for index in range(3)
    ]
    assert {share.disk_bytes for share in shares} == {1000}
    single = dataclasses.replace(settings, workers=1)
    assert worker_settings(single, 0) == single  # one process: the directory as configured
