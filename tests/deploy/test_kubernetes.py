"""deploy/k8s: the Kubernetes schemas (strict), and the probes, security and config relay needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deploy_files import (
    K8S,
    RELAY_DRAIN_S,
    load_yaml,
    relay_commands,
    run,
    serve_host,
    serve_port,
    served_get_paths,
    settings_from,
    tool,
)

MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest and the newest Kubernetes whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")


def manifest(kind: str) -> dict[str, Any]:
    """The one manifest of `kind` in deploy/k8s."""
    found = [doc for doc in map(load_yaml, MANIFESTS) if doc["kind"] == kind]
    assert len(found) == 1, kind
    document: dict[str, Any] = found[0]
    return document


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifest(kind)["spec"]["template"]["spec"]
    return spec


def only_container(kind: str) -> dict[str, Any]:
    (container,) = pod_spec(kind)["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schema(version: str) -> None:
    """Every manifest validates strictly (no unknown field) against Kubernetes' own schema."""
    result = run(tool("kubernetes-validate"), "--strict", "--no-warn", "-k", version, *map(str, MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomization_lists_manifests_that_exist() -> None:
    """kustomization.yaml names only files in deploy/k8s, and leaves out the example Secret and the Job."""
    resources = load_yaml(K8S / "kustomization.yaml")["resources"]
    assert all((K8S / name).is_file() for name in resources)
    assert "secret.example.yaml" not in resources and "migrate-job.yaml" not in resources


def test_probes_ask_healthz_on_the_port_relay_serves() -> None:
    """Startup, readiness and liveness probes GET /healthz on the container port `relay serve` listens on."""
    container = only_container("Deployment")
    assert container["args"][0] == "serve" and serve_host(container["args"]) == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz" and http["path"] in served_get_paths(), probe
        port = ports[http["port"]] if isinstance(http["port"], str) else http["port"]
        assert port == serve_port(container["args"]), probe
    # A database outage makes every relay unready at once; liveness waits longer before restarting them.
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"]
        > readiness["periodSeconds"] * readiness["failureThreshold"]
    )


def test_grace_period_outlasts_prestop_and_relay_drain() -> None:
    """terminationGracePeriodSeconds leaves room for the preStop pause and relay's whole drain."""
    spec = pod_spec("Deployment")
    pre_stop = only_container("Deployment")["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(pre_stop[1]) + RELAY_DRAIN_S


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_non_root_on_a_read_only_root(kind: str) -> None:
    """Non-root uid, no privilege escalation, no capabilities, read-only root with a writable /tmp."""
    spec = pod_spec(kind)
    container = only_container(kind)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_migration_job_runs_relay_migrate_once() -> None:
    """The Job runs `relay migrate` with the relays' image, config and Secret, and is not retried forever."""
    job, deployment = only_container("Job"), only_container("Deployment")
    assert job["args"] == ["migrate"] and "migrate" in relay_commands()
    assert job["image"] == deployment["image"]
    assert job["envFrom"] == deployment["envFrom"] and job["env"] == deployment["env"]
    assert pod_spec("Job")["restartPolicy"] == "Never"
    assert manifest("Job")["spec"]["backoffLimit"] <= 5


def test_service_and_budget_select_the_relays_only() -> None:
    """The Service and the PodDisruptionBudget select the Deployment's pods, not the migration Job's."""
    relay_labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    job_labels = manifest("Job")["spec"]["template"]["metadata"]["labels"]
    service = manifest("Service")["spec"]
    budget = manifest("PodDisruptionBudget")["spec"]
    for selector in (service["selector"], budget["selector"]["matchLabels"]):
        assert selector.items() <= relay_labels.items()
        assert not selector.items() <= job_labels.items()
    port_names = {p["name"] for p in only_container("Deployment")["ports"]}
    assert all(p["targetPort"] in port_names for p in service["ports"])
    assert budget["minAvailable"] < manifest("Deployment")["spec"]["replicas"]


def test_relays_start_with_the_config_and_the_secret(tmp_path: Path) -> None:
    """relay's own settings loader takes the ConfigMap's relay.toml with the example Secret's keys as the
    environment, and RELAY_CONFIG points at where that file is mounted."""
    container = only_container("Deployment")
    env = {e["name"]: e["value"] for e in container["env"]}
    secret = manifest("Secret")
    assert [src["secretRef"]["name"] for src in container["envFrom"]] == [secret["metadata"]["name"]]
    config_map = manifest("ConfigMap")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_volume = next(v for v in pod_spec("Deployment")["volumes"] if "configMap" in v)
    assert config_volume["configMap"]["name"] == config_map["metadata"]["name"]
    (file_name,) = config_map["data"]
    assert env["RELAY_CONFIG"] == f"{mounts[config_volume['name']]}/{file_name}"
    settings = settings_from(config_map["data"][file_name], {**env, **secret["stringData"]}, tmp_path)
    assert settings.database.startswith("postgresql://")
    assert settings.public_url == secret["stringData"]["RELAY_PUBLIC_URL"]
    assert settings.signing_secret == secret["stringData"]["RELAY_SIGNING_SECRET"]
