"""deploy/Dockerfile: lint-clean, non-root, and a build context that holds only what it copies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT, StopBudget, default_grace, run, tool
from tests.integration.harness import (
    RunningGateway,
    gateway_settings,
    make_keys,
    running_gateway,
)

DOCKERFILE = DEPLOY / "Dockerfile"
HEALTHCHECK = DEPLOY / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def env_value(name: str) -> str:
    for keyword, rest in final_stage():
        if keyword == "ENV" and (match := re.search(rf"\b{name}=(\S+)", rest)):
            return match.group(1)
    raise AssertionError(f"{name} not set in the final stage")


def image_grace() -> float:
    """The image's `shutdown_grace`: its ENV, else the setting's default."""
    try:
        return float(env_value("GATEWAY_SHUTDOWN_GRACE"))
    except AssertionError:
        return default_grace()


def stop_budget() -> StopBudget:
    """`docker stop` (and `docker run` without `--stop-timeout`) waits 10 s before SIGKILL: a
    Dockerfile cannot change that, so the image's grace must fit in it."""
    return StopBudget(grace=image_grace(), kill_after=10)


def test_hadolint_finds_nothing() -> None:
    result = run(tool("hadolint"), "--no-color", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_the_declared_ports_are_the_listeners() -> None:
    exposed = {rest for keyword, rest in final_stage() if keyword == "EXPOSE"}
    ports = {env_value("GATEWAY_LISTEN").rsplit(":", 1)[1]}
    ports.add(env_value("GATEWAY_ADMIN_LISTEN").rsplit(":", 1)[1])
    assert exposed == {" ".join(sorted(ports))}


def test_the_keyring_is_expected_in_a_mounted_directory_not_baked_in() -> None:
    keyring = Path(env_value("GATEWAY_KEYRING"))
    copied = " ".join(rest for keyword, rest in instructions() if keyword in ("COPY", "ADD"))
    assert keyring.parent != Path("/")
    assert "keyring" not in copied
    assert ".json" not in copied


def test_the_build_context_admits_exactly_what_the_dockerfile_copies() -> None:
    """.dockerignore denies everything, then re-admits only the sources COPY names."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    admitted = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from=" not in rest:
            sources = [word for word in rest.split() if not word.startswith("--")][:-1]
            copied |= {source.rstrip("/") for source in sources}
    assert rules[0] == "*"
    assert admitted == copied
    assert all((ROOT / path).exists() for path in admitted)


def exec_form(keyword: str) -> list[str]:
    (found,) = [rest for name, rest in final_stage() if name == keyword]
    words: list[str] = json.loads(found)
    return words


def documented_check() -> list[str]:
    """The `docker run ... check` command of the Dockerfile's comments, as words."""
    lines = [line.lstrip("# ") for line in DOCKERFILE.read_text().splitlines()]
    comments = "\n".join(lines).replace("\\\n", " ")
    commands = [shlex.split(found) for found in re.findall(r"docker run [^\n`]*", comments)]
    (check,) = [words for words in commands if words[-1] == "check"]
    return check


def test_the_documented_check_runs_gateway_check_in_the_image_as_built() -> None:
    built = re.search(r"docker build .* -t (\S+) \.", DOCKERFILE.read_text())
    assert built is not None
    command = documented_check()
    image = command.index(built.group(1))
    assert exec_form("ENTRYPOINT") == ["gateway"]
    assert exec_form("CMD") == ["serve"]
    assert [*exec_form("ENTRYPOINT"), *command[image + 1 :]] == ["gateway", "check"]
    mounts = [command[i + 1] for i, word in enumerate(command[:image]) if word == "-v"]
    keyring_directory = Path(env_value("GATEWAY_KEYRING")).parent
    assert any(mount.split(":")[1] == str(keyring_directory) for mount in mounts), mounts


def test_the_healthcheck_is_the_script_the_image_installs() -> None:
    (check,) = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    assert check.endswith('CMD ["healthcheck"]')
    assert "deploy/healthcheck.py /opt/edge-gateway/bin/healthcheck" in DOCKERFILE.read_text()
    assert os.access(HEALTHCHECK, os.X_OK)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    keys = make_keys(tmp_path)
    objects = tmp_path / "objects"
    objects.mkdir()
    async with running_gateway(gateway_settings(f"file://{objects}", keys.gateway_file)) as gw:
        yield gw


async def healthcheck(admin_listen: str) -> int:
    """The exit status of the image's HEALTHCHECK command, run against `admin_listen`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK),
        env={**os.environ, "GATEWAY_ADMIN_LISTEN": admin_listen},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return await process.wait()


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
async def test_the_healthcheck_passes_against_a_live_admin_listener(
    gateway: RunningGateway, host: str
) -> None:
    assert await healthcheck(f"{host}:{gateway.admin.port}") == 0


async def test_the_healthcheck_fails_when_nothing_answers(gateway: RunningGateway) -> None:
    assert await healthcheck(f"127.0.0.1:{gateway.server.port}") == 1  # public port: 404
    await gateway.admin.close()
    assert await healthcheck(f"127.0.0.1:{gateway.admin.port}") == 1
