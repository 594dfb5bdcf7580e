"""`gateway check` against real storage: one line per finding, naming the setting; exit 0 when
the gateway would serve, 1 when it would not, 2 when the settings do not load."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.observability.redaction import redact_url
from gateway.revocation import Kind, Revocation, snapshot
from signer import Algorithm, Keyring, Status, new_key
from tests.integration.conftest import PRIVATE_BUCKET, PUBLIC_BUCKET
from tests.integration.harness import make_keys, use_credentials
from tests.redis_server import redis_server
from tests.servers import S3Server, free_port
from tests.unit.test_check import as_shown, documented

pytestmark = pytest.mark.integration


@pytest.fixture
def configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> dict[str, str]:
    """The environment of a gateway in front of the private bucket, with nothing wrong."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    use_credentials(monkeypatch, s3_server)
    keys = make_keys(tmp_path)
    environ = {
        "GATEWAY_ORIGIN": f"s3://{PRIVATE_BUCKET}/",
        "GATEWAY_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "GATEWAY_KEYRING": str(keys.gateway_file),
        "GATEWAY_REVOCATION_DB": str(tmp_path / "revocations.sqlite3"),
        "GATEWAY_CACHE": "true",
        "GATEWAY_CACHE_DIR": str(tmp_path / "cache"),
        "GATEWAY_CACHE_DISK_BYTES": "1048576",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


def check(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check"])
    return code, capsys.readouterr().out.splitlines()


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("error")]


def test_a_sound_configuration_passes_and_says_what_it_checked(
    configured: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(capsys)

    assert code == 0, lines
    assert errors(lines) == []
    checked = {line.split()[1].rstrip(":") for line in lines if line.startswith("ok")}
    assert checked == {
        "GATEWAY_KEYRING",
        "GATEWAY_ORIGIN",
        "GATEWAY_REVOCATION_DB",
        "GATEWAY_CACHE_DIR",
    }
    assert any("verifies old, live; retired: gone" in line for line in lines)


def test_wrong_credentials_are_an_error_naming_the_origin(
    configured: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")

    code, lines = check(capsys)

    assert code == 1
    assert errors(lines) == [documented("403 access denied")]


def test_a_missing_bucket_is_an_error(
    configured: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_ORIGIN", "s3://no-such-bucket-here/")

    code, lines = check(capsys)

    assert code == 1
    assert errors(lines) == [documented("404 no such bucket")]


def test_an_unreachable_endpoint_is_an_error_naming_the_setting(
    configured: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("GATEWAY_CONNECT_TIMEOUT", "1")

    code, lines = check(capsys)

    assert code == 1
    assert errors(lines) == [documented("cannot connect to the endpoint")]


def test_a_bucket_anyone_can_read_is_a_warning(
    configured: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_ORIGIN", f"s3://{PUBLIC_BUCKET}/")

    code, lines = check(capsys)

    assert code == 0  # it would serve, but nothing stops anyone going around it
    warnings = [line for line in lines if line.startswith("warning")]
    assert warnings == [documented("for anyone, without credentials")]


def test_a_private_ed25519_key_is_an_error_that_says_what_to_do(
    configured: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signing = tmp_path / "signing-keyring.json"
    Keyring([new_key("k1", Algorithm.ED25519, Status.ACTIVE)]).save(signing)
    monkeypatch.setenv("GATEWAY_KEYRING", str(signing))

    code, lines = check(capsys)

    assert code == 1
    assert [as_shown(line, tmp_path) for line in errors(lines)] == [documented("export-public")]


def test_an_hmac_keyring_readable_by_others_is_a_warning(
    configured: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shared = tmp_path / "hmac-keyring.json"
    Keyring([new_key("h1", Algorithm.HMAC_SHA256, Status.ACTIVE)]).save(shared)
    shared.chmod(0o644)
    monkeypatch.setenv("GATEWAY_KEYRING", str(shared))

    code, lines = check(capsys)

    assert code == 0
    warnings = [as_shown(line, tmp_path) for line in lines if line.startswith("warning")]
    assert warnings == [documented("mode 644")]


def test_an_unwritable_cache_directory_is_an_error(
    configured: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GATEWAY_CACHE_DIR", str(blocker / "cache"))  # under a file: never

    code, lines = check(capsys)

    assert code == 1
    assert [as_shown(line, tmp_path) for line in errors(lines)] == [
        documented("the cache would bypass its disk")
    ]


def test_a_revocation_db_that_cannot_be_created_is_an_error(
    configured: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GATEWAY_REVOCATION_DB", str(blocker / "revocations.sqlite3"))

    code, lines = check(capsys)

    assert code == 1
    assert [as_shown(line, tmp_path) for line in errors(lines)] == [documented("cannot create it")]


def test_settings_that_do_not_load_exit_2_naming_the_setting(
    configured: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_LISTEN", "nowhere")

    code, lines = check(capsys)

    assert code == 2
    assert lines == [documented("GATEWAY_LISTEN")]


def test_a_missing_keyring_is_an_error_naming_the_file(
    configured: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_KEYRING", str(tmp_path / "gateway-keyring.json.missing"))

    code, lines = check(capsys)

    assert code == 1
    assert [as_shown(line, tmp_path) for line in errors(lines)] == [
        documented("No such file or directory")
    ]


@pytest.fixture
def unreachable_redis(monkeypatch: pytest.MonkeyPatch) -> str:
    """A Redis URL where nothing listens: the store of a fleet, down."""
    port = free_port()
    monkeypatch.setenv("GATEWAY_REDIS_URL", f"redis://:not-shown@127.0.0.1:{port}/0")
    monkeypatch.setenv("GATEWAY_CONNECT_TIMEOUT", "2")
    return str(port)


def test_an_unreachable_redis_is_an_error_that_shows_no_password(
    configured: dict[str, str],
    unreachable_redis: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = check(capsys)

    assert code == 1
    assert [as_shown(line, tmp_path, **{unreachable_redis: "6379"}) for line in errors(lines)] == [
        documented("no usable snapshot")
    ]
    assert "not-shown" not in "\n".join(lines)


def test_an_unreachable_redis_with_a_usable_snapshot_is_a_warning(
    configured: dict[str, str],
    unreachable_redis: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The gateway itself would start from the snapshot, so a check before every start
    (systemd's ExecStartPre) must not keep it down."""
    url = os.environ["GATEWAY_REDIS_URL"]
    path = (tmp_path / "revocations.sqlite3").with_suffix(".snapshot.json")
    now = time.time()
    revoked = [Revocation(Kind.SUB, f"user-{i}", now + 3600, now - 60) for i in range(3)]
    snapshot.write(path, store=redact_url(url), synced_at=now - 5, entries=revoked)

    code, lines = check(capsys)

    assert code == 0
    warnings = [line for line in lines if line.startswith("warning")]
    assert len(warnings) == 1
    shown = as_shown(warnings[0], tmp_path, **{unreachable_redis: "6379"})
    assert re.sub(r"last in sync \d+s ago", "last in sync 5s ago", shown) == documented(
        "from its snapshot"
    )


@pytest.mark.parametrize("fail_open", ["false", "true"], ids=["fail-closed", "fail-open"])
def test_a_stopped_valkey_without_a_snapshot_is_fatal_only_when_failing_closed(
    configured: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fail_open: str,
) -> None:
    """With `revocation_fail_open` the gateway serves while Redis is down, so the check must
    not keep it down; but it says loudly what is served meanwhile, and that the setting is on."""
    monkeypatch.setenv("GATEWAY_REVOCATION_FAIL_OPEN", fail_open)
    monkeypatch.setenv("GATEWAY_CONNECT_TIMEOUT", "2")
    with redis_server(tmp_path) as valkey:
        monkeypatch.setenv("GATEWAY_REDIS_URL", valkey.url)
        code, lines = check(capsys)
        assert (code, errors(lines)) == (0, []), lines  # while it runs, the check passes
        valkey.stop()

        code, lines = check(capsys)

    shown = [as_shown(line, tmp_path, **{str(valkey.port): "6379"}) for line in lines]
    store = [line for line in shown if "GATEWAY_REDIS_URL" in line]
    warnings = [line for line in shown if line.startswith("warning")]
    if fail_open == "false":
        assert code == 1
        assert [line.split()[0] for line in store] == ["error"]
        assert warnings == []
    else:
        assert code == 0
        assert errors(lines) == []
        assert warnings == [
            documented("until the store answers, revoked links included"),
            documented("revoked links play"),
        ]
