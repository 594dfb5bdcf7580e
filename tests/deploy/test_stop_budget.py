"""The grace every deploy file gives the gateway, against when it kills it: one check for all.

After SIGTERM the gateway lets requests in flight finish for `GATEWAY_SHUTDOWN_GRACE`, cuts
what still runs and exits within `EXIT_MARGIN` more (tests/integration/test_shutdown.py shows
it, workers included). An orchestrator that SIGKILLs sooner cuts uploads the grace promised to
let finish, so each file's stop timeout must exceed its pause before SIGTERM, plus the grace it
sets, plus that margin.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from gateway.server import EXIT_MARGIN
from tests.deploy import test_dockerfile, test_kubernetes, test_systemd
from tests.deploy.conftest import DEPLOY, StopBudget
from tests.deploy.test_compose import stop_budgets

BUDGETS: dict[str, Callable[[], StopBudget]] = {
    "kubernetes": test_kubernetes.stop_budget,
    "systemd": test_systemd.stop_budget,
    "Dockerfile": test_dockerfile.stop_budget,
}


def compose_budget(path: Path, service: str) -> StopBudget:
    return stop_budgets(path)[service]


for compose_file in sorted(DEPLOY.glob("compose*.yaml")):
    for service in stop_budgets(compose_file):
        BUDGETS[f"{compose_file.name} {service}"] = partial(compose_budget, compose_file, service)


def test_every_compose_file_runs_gateways() -> None:
    assert any(key.startswith("compose") for key in BUDGETS)  # or the check below skips them


@pytest.mark.parametrize("deploy", BUDGETS)
def test_the_stop_timeout_outlasts_the_grace_and_the_exit(deploy: str) -> None:
    budget = BUDGETS[deploy]()
    assert budget.kill_after > budget.pause + budget.grace + EXIT_MARGIN, budget
