"""deploy/kubernetes: valid against the Kubernetes API schemas, and consistent with itself."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.deploy.conftest import (
    KUBERNETES,
    StopBudget,
    default_grace,
    kubernetes_manifests,
    load_yaml,
    run,
    tool,
)

# The oldest Kubernetes release still commonly supported, and the newest the validator knows.
VERSIONS = ["1.30.0", None]
PRESTOP_PAUSE = 5


def resource(kind: str) -> Any:
    found = [
        doc for path in kubernetes_manifests() for doc in load_yaml(path) if doc["kind"] == kind
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> Any:
    return resource("Deployment")["spec"]["template"]["spec"]


def container() -> Any:
    (gateway,) = pod_spec()["containers"]
    return gateway


def init_container() -> Any:
    (check,) = pod_spec()["initContainers"]
    return check


def settings() -> dict[str, str]:
    data: dict[str, str] = resource("ConfigMap")["data"]
    return data


@pytest.mark.parametrize("path", kubernetes_manifests(), ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v or "newest")
def test_the_manifest_validates_against_the_api_schema(path: Path, version: str | None) -> None:
    options = ["--kubernetes-version", version] if version else []
    result = run(tool("kubernetes-validate"), "--strict", *options, path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARN" not in output, output  # e.g. a kind without a schema is not checked at all


def test_the_keyring_is_the_whole_secret_mounted_as_a_directory() -> None:
    """A Secret volume updates by an atomic `..data` swap; a subPath mount never updates."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    keyring = PurePosixPath(settings()["GATEWAY_KEYRING"])
    (mount,) = [m for m in container()["volumeMounts"] if m["mountPath"] == str(keyring.parent)]
    assert "subPath" not in mount
    assert "subPathExpr" not in mount
    assert mount["readOnly"] is True
    assert "secret" in volumes[mount["name"]]
    assert "items" not in volumes[mount["name"]]["secret"]  # the file name is the Secret's key


def test_an_init_container_runs_gateway_check_first() -> None:
    assert init_container()["args"] == ["check"]
    assert container()["args"] == ["serve"]


@pytest.mark.parametrize(
    "field", ["image", "imagePullPolicy", "envFrom", "env", "volumeMounts", "securityContext"]
)
def test_the_check_sees_what_the_gateway_will(field: str) -> None:
    """The same image, settings, Secrets and mounts: what it checks is what will serve."""
    assert init_container()[field] == container()[field]


def stop_budget() -> StopBudget:
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    return StopBudget(
        grace=float(settings().get("GATEWAY_SHUTDOWN_GRACE", default_grace())),
        kill_after=pod_spec()["terminationGracePeriodSeconds"],  # counts the preStop pause too
        pause=float(command[1]),
    )


def test_the_pod_drains_streams_before_it_is_killed() -> None:
    grace = float(settings()["GATEWAY_SHUTDOWN_GRACE"])
    assert pod_spec()["terminationGracePeriodSeconds"] > PRESTOP_PAUSE + grace
    assert container()["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRESTOP_PAUSE)]


@pytest.mark.parametrize(
    ("probe", "path"),
    [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")],
)
def test_probes_ask_the_admin_listener(probe: str, path: str) -> None:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    admin_port = int(settings()["GATEWAY_ADMIN_LISTEN"].rsplit(":", 1)[1])
    check = container()[probe]["httpGet"]
    assert check["path"] == path
    assert ports[check["port"]] == admin_port


def test_the_container_is_locked_down() -> None:
    pod, box = pod_spec()["securityContext"], container()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert box["readOnlyRootFilesystem"] is True
    assert box["allowPrivilegeEscalation"] is False
    assert box["capabilities"]["drop"] == ["ALL"]
    assert set(container()["resources"]) == {"requests", "limits"}


def test_writable_paths_are_volumes() -> None:
    """With a read-only root, the revocation database and /tmp live on emptyDir volumes."""
    mounts = {m["mountPath"] for m in container()["volumeMounts"]}
    database = PurePosixPath(settings()["GATEWAY_REVOCATION_DB"])
    assert str(database.parent) in mounts
    assert "/tmp" in mounts


def test_only_monitoring_reaches_the_admin_port() -> None:
    rules = resource("NetworkPolicy")["spec"]["ingress"]
    admin_rules = [r for r in rules if any(p["port"] == "admin" for p in r["ports"])]
    assert len(admin_rules) == 1
    (source,) = admin_rules[0]["from"]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert "podSelector" in source  # not every pod of that namespace


def test_the_service_does_not_expose_the_admin_port() -> None:
    assert [p["targetPort"] for p in resource("Service")["spec"]["ports"]] == ["http"]


def test_the_autoscaler_and_the_disruption_budget_keep_two_gateways() -> None:
    assert resource("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
    assert resource("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "replicas" not in resource("Deployment")["spec"]  # owned by the autoscaler


def test_the_scrape_config_finds_the_gateways_admin_port() -> None:
    """Debian's promtool lacks Kubernetes discovery, so the job is checked against the manifests."""
    (config,) = load_yaml(KUBERNETES / "prometheus" / "scrape-config.yml")
    (job,) = config["scrape_configs"]
    keep = {
        r["source_labels"][0]: r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert keep == {
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": labels["app.kubernetes.io/name"],
        "__meta_kubernetes_pod_container_port_name": "admin",
    }
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["namespaces"]["names"] == [resource("Deployment")["metadata"]["namespace"]]


def test_the_rotation_guide_exists_next_to_the_manifests() -> None:
    guide = (KUBERNETES / "ROTATION.md").read_text()
    assert "kubectl" in guide
    assert "signer export-public" in guide
