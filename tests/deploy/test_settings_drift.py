"""Every GATEWAY_* name in the deploy files is a real setting (one source of truth: SETTINGS)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.settings import ENV_NAMES
from tests.deploy.conftest import DEPLOY, ROOT

NAME = re.compile(r"(?<![A-Za-z0-9_])GATEWAY_[A-Z0-9_]*[A-Z0-9]")
# The files that configure a gateway must set some settings, or this test proves nothing.
CONFIGURING = ["compose.yaml", "kubernetes/configmap.yaml", "systemd/gateway.env", "Dockerfile"]
DEPLOY_FILES = sorted(
    path
    for path in DEPLOY.rglob("*")
    if path.is_file() and path.suffix not in (".pyc",) and "__pycache__" not in path.parts
)


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_gateway_variable_named_is_a_setting(path: Path) -> None:
    unknown = set(NAME.findall(path.read_text(errors="replace"))) - ENV_NAMES
    assert not unknown, f"not settings of the gateway (see `gateway settings`): {sorted(unknown)}"


@pytest.mark.parametrize("name", CONFIGURING)
def test_the_configuring_files_set_gateway_variables(name: str) -> None:
    assert len(set(NAME.findall((DEPLOY / name).read_text()))) >= 3
