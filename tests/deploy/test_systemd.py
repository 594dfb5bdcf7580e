"""deploy/systemd: a unit systemd accepts, hardened, reloading the keyring on `systemctl reload`."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, StopBudget, default_grace, run, tool
from tests.integration.harness import make_keys

UNIT = DEPLOY / "systemd" / "edge-gateway.service"
ENV_FILE = DEPLOY / "systemd" / "gateway.env"
INSTALLED_GATEWAY = "/opt/edge-gateway/bin/gateway"


def service() -> dict[str, list[str]]:
    """The [Service] section; a key may appear several times (SystemCallFilter=)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


class CaseKeepingParser(configparser.ConfigParser):
    """Environment names are case-sensitive; ConfigParser lower-cases keys by default."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def environment() -> dict[str, str]:
    parser = CaseKeepingParser(interpolation=None, comment_prefixes=("#",))
    parser.read_string("[env]\n" + ENV_FILE.read_text())
    return dict(parser["env"])


def this_gateway() -> str:
    """This checkout's `gateway` console script, standing in for the installed one."""
    gateway = shutil.which("gateway", path=os.path.dirname(sys.executable))
    if gateway is None:
        pytest.skip("the `gateway` console script is not on PATH (pip install -e .)")
    return gateway


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Verified as installed, except that the commands run this checkout's `gateway`."""
    analyze = tool("systemd-analyze")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_GATEWAY, this_gateway()))
    result = run(analyze, "verify", "--man=no", unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # unknown keys and bad values are only warnings


def test_every_start_runs_gateway_check_first_with_the_servers_arguments() -> None:
    """No `-` prefix (which would ignore its failure): an error fails the start."""
    (check,) = service()["ExecStartPre"]
    (serve,) = service()["ExecStart"]
    assert shlex.split(check) == [
        "check" if word == "serve" else word for word in shlex.split(serve)
    ]


@pytest.mark.parametrize(
    ("mistake", "status"),
    [
        ({}, 0),
        ({"GATEWAY_KEYRING": "{tmp}/no-such-keyring.json"}, 1),
        ({"GATEWAY_ORIGIN": "file://{tmp}/no-such-directory"}, 1),
        ({"GATEWAY_LISTEN": "nowhere"}, 2),
    ],
    ids=["sound", "missing-keyring", "missing-origin", "bad-setting"],
)
def test_the_check_step_passes_a_sound_configuration_and_fails_a_wrong_one(
    tmp_path: Path, mistake: dict[str, str], status: int
) -> None:
    """ExecStartPre= as systemd runs it: the unit's command line, the shipped environment
    file (its paths moved into a temporary directory, storage a local directory) and no
    other variable."""
    (objects := tmp_path / "objects").mkdir()
    env = environment() | {
        "GATEWAY_ORIGIN": f"file://{objects}",
        "GATEWAY_KEYRING": str(make_keys(tmp_path).gateway_file),
        "GATEWAY_REVOCATION_DB": str(tmp_path / "revocations.sqlite3"),
    }
    env |= {name: value.format(tmp=tmp_path) for name, value in mistake.items()}
    (check,) = service()["ExecStartPre"]
    command = shlex.split(check.replace(INSTALLED_GATEWAY, this_gateway()))
    result = subprocess.run(
        command,
        env={"PATH": os.defpath, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == status, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("error")]
    assert [line.split()[1].rstrip(":") for line in errors] == [
        "settings" if status == 2 else name for name in mistake
    ]


def test_reload_sends_sighup_to_the_gateway() -> None:
    assert service()["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service()["ExecStart"] == [f"{INSTALLED_GATEWAY} serve"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("DynamicUser", "yes"),
    ],
)
def test_the_service_is_hardened(key: str, value: str) -> None:
    assert service()[key] == [value]


def stop_budget() -> StopBudget:
    (timeout,) = service()["TimeoutStopSec"]
    match = re.fullmatch(r"(\d+)s?", timeout)
    assert match is not None, timeout
    return StopBudget(
        grace=float(environment().get("GATEWAY_SHUTDOWN_GRACE", default_grace())),
        kill_after=int(match.group(1)),
    )


def test_stopping_waits_for_the_stream_drain_deadline() -> None:
    grace = float(environment().get("GATEWAY_SHUTDOWN_GRACE", "30"))
    (timeout,) = service()["TimeoutStopSec"]
    match = re.fullmatch(r"(\d+)s?", timeout)
    assert match is not None
    assert int(match.group(1)) > grace


def test_the_revocation_database_is_in_the_state_directory() -> None:
    (state,) = service()["StateDirectory"]
    assert Path(environment()["GATEWAY_REVOCATION_DB"]).parent == Path("/var/lib") / state


def test_the_environment_file_holds_no_live_secret() -> None:
    env = environment()
    assert "AWS_SECRET_ACCESS_KEY" not in env  # commented out, with a placeholder
    assert "GATEWAY_ADMIN_TOKEN" not in env
    assert "GATEWAY_REDIS_URL" not in env
