"""deploy/compose.yaml: a valid Compose file whose parts fit together."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, StopBudget, load_yaml, run, tool
from tests.deploy.test_dockerfile import exec_form, image_grace

COMPOSE = DEPLOY / "compose.yaml"
GATEWAYS = ("gateway-1", "gateway-2")


def compose() -> Any:
    (document,) = load_yaml(COMPOSE)
    return document


def seconds(duration: str) -> float:
    """A Compose duration such as 40s or 1m30s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    return sum(float(value) * units[unit] for value, unit in parts)


def test_it_validates_against_the_compose_specification() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_the_gateways_trust_the_tls_proxy_and_only_it(gateway: str) -> None:
    services = compose()["services"]
    proxy_address = ipaddress.ip_address(services["proxy"]["networks"]["edge"]["ipv4_address"])
    trusted = services[gateway]["environment"]["GATEWAY_TRUSTED_PROXIES"].split(",")
    assert [ipaddress.ip_network(cidr.strip()) for cidr in trusted] == [
        ipaddress.ip_network(f"{proxy_address}/32")
    ]


def test_the_proxy_balances_over_both_gateways() -> None:
    caddyfile = (DEPLOY / "compose" / "Caddyfile").read_text()
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", caddyfile)
    assert upstreams is not None
    listen = compose()["services"]["gateway-1"]["environment"].get("GATEWAY_LISTEN")
    port = (listen or "0.0.0.0:8080").rsplit(":", 1)[1]  # the image's default
    assert upstreams.group(1).split() == [f"{name}:{port}" for name in GATEWAYS]


def runs_the_image(service: Any) -> bool:
    return "dockerfile" in service.get("build", {}) or "edge-gateway" in service.get("image", "")


def stop_budgets(path: Path) -> dict[str, StopBudget]:
    """Each gateway service of a Compose file: those that run the image's `gateway serve`
    (its CMD; not the one-shot `gateway check`)."""
    (document,) = load_yaml(path)
    budgets = {}
    for name, service in document["services"].items():
        if runs_the_image(service) and service.get("command", ["serve"]) == ["serve"]:
            budgets[name] = StopBudget(
                grace=float(
                    service.get("environment", {}).get("GATEWAY_SHUTDOWN_GRACE", image_grace())
                ),
                kill_after=seconds(service.get("stop_grace_period", "10s")),  # Compose's default
            )
    return budgets


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_stopping_gateway_drains_before_it_is_killed(gateway: str) -> None:
    service = compose()["services"][gateway]
    grace = float(service["environment"]["GATEWAY_SHUTDOWN_GRACE"])
    assert seconds(service["stop_grace_period"]) > grace


def test_every_gateway_starts_only_after_gateway_check_succeeded() -> None:
    """As systemd's ExecStartPre and the Kubernetes init container: a failed check (exit 1
    or 2) keeps the gateways from starting."""
    services = compose()["services"]
    started = [name for name, service in services.items() if runs_the_image(service)]
    assert sorted(started) == ["check", *GATEWAYS]
    for gateway in GATEWAYS:
        assert services[gateway]["depends_on"]["check"] == {
            "condition": "service_completed_successfully"
        }


def test_the_check_is_a_one_shot_gateway_check() -> None:
    check = compose()["services"]["check"]
    assert [*exec_form("ENTRYPOINT"), *check["command"]] == ["gateway", "check"]
    assert check["restart"] == "no"
    assert check["healthcheck"] == {"disable": True}  # the image's probes a serving gateway


@pytest.mark.parametrize(
    "field",
    ["build", "image", "environment", "volumes", "tmpfs", "read_only", "cap_drop", "networks"],
)
@pytest.mark.parametrize("gateway", GATEWAYS)
def test_the_check_sees_what_the_gateways_will(gateway: str, field: str) -> None:
    """The same image, settings, mounts and network: what it checks is what will serve."""
    services = compose()["services"]
    assert services["check"][field] == services[gateway][field]


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_the_check_waits_for_what_the_gateways_wait_for(gateway: str) -> None:
    """Storage and Redis are up when it reaches them, as they are when the gateways start."""
    services = compose()["services"]
    waits = {k: v for k, v in services[gateway]["depends_on"].items() if k != "check"}
    assert services["check"]["depends_on"] == waits


def test_every_bind_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"


def test_the_bucket_is_private_to_named_identities() -> None:
    """The store has identities (so anonymous requests are refused); the gateways' may only read."""
    identities = compose()["configs"]["s3-identities"]["content"]
    gateway = re.search(r'"name": "gateway".*?"actions": \[([^\]]*)\]', identities, re.S)
    assert gateway is not None
    assert set(re.findall(r'"(\w+):media"', gateway.group(1))) == {"Read", "List"}


def test_no_secret_is_written_into_the_file() -> None:
    """Credentials come from deploy/.env: every value that looks like one is a ${VARIABLE}."""
    text = COMPOSE.read_text()
    for key in ("AWS_SECRET_ACCESS_KEY", "GF_SECURITY_ADMIN_PASSWORD", "GATEWAY_ADMIN_TOKEN"):
        for value in re.findall(rf"{key}: (.*)", text):
            assert value.startswith("${"), f"{key}: {value}"
    assert '"secretKey": "${' in text
