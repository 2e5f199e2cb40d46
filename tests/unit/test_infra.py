"""Every manifest under infra/ parses, and every Kubernetes object holds the rules that keep a
deploy safe: names, pinned identical images, resources on every container, keys only from
Secrets, unprivileged pods. Built-in kinds and every pod template are also checked against
the Kubernetes JSON schemas when `kubernetes-validate` is installed (strict: unknown fields
fail); KubeRay's own fields are checked against the field names of its Go types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
KUBERAY = INFRA / "kuberay"
KUSTOMIZE_KINDS = {"Kustomization", "Component"}
# Files under infra/kuberay that are not Kubernetes objects: tierline job specs.
TIERLINE_SPECS = {KUBERAY / "nightly" / "nightly-tickets.yaml"}

Obj = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})


def load_docs(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [json.loads(text)]
    return [d for d in yaml.safe_load_all(text) if d is not None]


def k8s_objects() -> list[tuple[Path, Obj]]:
    out = []
    for path in manifest_files():
        if path.is_relative_to(KUBERAY) and path not in TIERLINE_SPECS:
            for doc in load_docs(path):
                if doc.get("kind") not in KUSTOMIZE_KINDS:
                    out.append((path, doc))
    return out


def pod_templates(obj: Obj) -> Iterator[tuple[str, Obj]]:
    """(where, pod template) for every pod template in an object this repo deploys."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "CronJob":
        yield "jobTemplate", spec["jobTemplate"]["spec"]["template"]
    elif kind == "RayCluster":
        yield from _ray_cluster_templates(spec)
    elif kind == "RayJob":
        if "submitterPodTemplate" in spec:
            yield "submitterPodTemplate", spec["submitterPodTemplate"]
        if "rayClusterSpec" in spec:
            yield from _ray_cluster_templates(spec["rayClusterSpec"])
    elif kind not in {"Namespace", "ServiceAccount", "ConfigMap", "PodMonitor"}:
        raise AssertionError(f"{kind}: teach these tests where its pods are")


def _ray_cluster_templates(spec: Obj) -> Iterator[tuple[str, Obj]]:
    yield "headGroupSpec", spec["headGroupSpec"]["template"]
    for group in spec.get("workerGroupSpecs", []):
        yield f"workerGroupSpecs[{group['groupName']}]", group["template"]


def containers() -> list[tuple[str, Obj]]:
    out = []
    for path, obj in k8s_objects():
        for where, template in pod_templates(obj):
            pod = template["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                out.append((f"{path.relative_to(INFRA)}:{obj['kind']}.{where}.{c['name']}", c))
    return out


def pods() -> list[tuple[str, Obj]]:
    return [
        (f"{path.relative_to(INFRA)}:{obj['kind']}.{where}", template["spec"])
        for path, obj in k8s_objects()
        for where, template in pod_templates(obj)
    ]


_UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(q: str | int | float) -> float:
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    assert m, f"not a Kubernetes quantity: {q!r}"
    return float(m[1]) * _UNITS.get(m[2] or "", 1)


# --- every file parses ------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_manifest_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(d, dict) and d for d in docs)


def test_every_kuberay_document_is_a_kubernetes_object() -> None:
    assert KUBERAY.is_dir()
    for path, obj in k8s_objects():
        assert isinstance(obj.get("apiVersion"), str) and "kind" in obj, path
        name = obj.get("metadata", {}).get("name", "")
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name), (path, name)
        if obj["kind"] != "Namespace":
            # Explicit, so `kubectl apply -f` lands where `apply -k` does.
            assert obj["metadata"].get("namespace") == "tierline", (path, name)
    kinds = {obj["kind"] for _, obj in k8s_objects()}
    assert {"RayCluster", "RayJob", "CronJob", "ServiceAccount", "PodMonitor"} <= kinds


# --- containers ---------------------------------------------------------------------------


def test_every_container_has_requests_and_limits() -> None:
    found = containers()
    assert len(found) >= 4  # head, worker, nightly submitter, RayJob submitter
    for where, c in found:
        res = c.get("resources", {})
        for key in ("cpu", "memory"):
            req, lim = res.get("requests", {}).get(key), res.get("limits", {}).get(key)
            assert req is not None and lim is not None, f"{where}: {key} request and limit"
            assert quantity(lim) >= quantity(req) > 0, f"{where}: {key} limit below request"
    for _, obj in k8s_objects():
        if obj["kind"] == "RayCluster" and obj["spec"].get("enableInTreeAutoscaling"):
            res = obj["spec"]["autoscalerOptions"]["resources"]  # the injected sidecar
            assert {"cpu", "memory"} <= set(res["requests"]) & set(res["limits"])


def test_images_pinned_and_identical() -> None:
    images = {c["image"] for _, c in containers()}
    assert len(images) == 1, f"every pod must run the same image, found {sorted(images)}"
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert "@sha256:" in image or (name and "/" not in tag), f"{image}: no tag"
    assert tag not in {"", "latest"}, f"{image}: pin a version, never latest"


def test_provider_keys_only_from_secret_key_refs() -> None:
    secretish = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)
    key_names = set()
    for where, c in containers():
        assert "envFrom" not in c, f"{where}: name every variable; no envFrom"
        for env in c.get("env", []):
            if secretish.search(env["name"]):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                assert ref and "value" not in env, f"{where}: {env['name']} needs a secretKeyRef"
                assert ref.get("name") and ref.get("key"), f"{where}: {env['name']}"
                key_names.add(env["name"])
            else:
                assert not re.search(r"sk-[A-Za-z0-9]|AKIA|ASIA[0-9A-Z]{8}", env.get("value", ""))
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= key_names
    for _, c in containers():
        names = {e["name"] for e in c.get("env", [])}
        assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def test_pods_run_unprivileged() -> None:
    for where, pod in pods():
        sc = pod.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, where
        assert sc.get("runAsUser", 0) != 0, where
        assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
    for where, c in containers():
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
        assert not sc.get("privileged"), where


# --- schemas -------------------------------------------------------------------------------

# Field names of KubeRay's Go types (ray-operator/apis/ray/v1): a typo in a custom
# resource is not rejected by kubectl until the operator ignores it.
RAYCLUSTER_SPEC = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headGroupSpec",
    "workerGroupSpecs",
    "headServiceAnnotations",
    "suspend",
    "managedBy",
    "gcsFaultToleranceOptions",
    "upgradeStrategy",
    "authOptions",
}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "numOfHosts",
    "idleTimeoutSeconds",
    "suspend",
}
AUTOSCALER = {
    "resources",
    "image",
    "imagePullPolicy",
    "securityContext",
    "env",
    "envFrom",
    "volumeMounts",
    "idleTimeoutSeconds",
    "upscalingMode",
    "version",
}
RAYJOB_SPEC = {
    "activeDeadlineSeconds",
    "backoffLimit",
    "rayClusterSpec",
    "submitterPodTemplate",
    "metadata",
    "clusterSelector",
    "submitterConfig",
    "managedBy",
    "deletionStrategy",
    "entrypoint",
    "runtimeEnvYAML",
    "jobId",
    "submissionMode",
    "entrypointResources",
    "entrypointNumCpus",
    "entrypointNumGpus",
    "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes",
    "suspend",
    "schedule",
}


def _check_ray_cluster_spec(spec: Obj, where: str) -> None:
    assert set(spec) <= RAYCLUSTER_SPEC, f"{where}: {set(spec) - RAYCLUSTER_SPEC}"
    assert isinstance(spec["rayVersion"], str), where
    assert set(spec.get("autoscalerOptions", {})) <= AUTOSCALER, where
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP, f"{where}: {set(head) - HEAD_GROUP}"
    groups = [("head", head)]
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP, f"{where}: {set(group) - WORKER_GROUP}"
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], where
        groups.append((group["groupName"], group))
    for name, group in groups:
        params = group.get("rayStartParams", {})
        # map[string]string in KubeRay: an unquoted number fails the whole object.
        assert all(isinstance(v, str) for v in params.values()), f"{where} {name}: {params}"
        assert group["template"]["spec"]["containers"], f"{where} {name}"


def test_kuberay_objects_use_only_known_fields() -> None:
    seen = set()
    for path, obj in k8s_objects():
        if obj["kind"] == "RayCluster":
            assert obj["apiVersion"] == "ray.io/v1", path
            _check_ray_cluster_spec(obj["spec"], str(path))
        elif obj["kind"] == "RayJob":
            assert obj["apiVersion"] == "ray.io/v1", path
            spec = obj["spec"]
            assert set(spec) <= RAYJOB_SPEC, f"{path}: {set(spec) - RAYJOB_SPEC}"
            assert isinstance(spec["entrypoint"], str) and spec["entrypoint"].strip()
            assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), path
            if "rayClusterSpec" in spec:
                _check_ray_cluster_spec(spec["rayClusterSpec"], str(path))
        else:
            continue
        seen.add(obj["kind"])
    assert seen == {"RayCluster", "RayJob"}


def _schema_subjects() -> list[tuple[str, Obj]]:
    """Built-in objects as they are, and every pod template wrapped as a core/v1 PodTemplate."""
    out = []
    for path, obj in k8s_objects():
        where = f"{path.relative_to(INFRA)}:{obj['kind']}"
        if obj["apiVersion"] in {"v1", "batch/v1"}:
            out.append((where, obj))
        for part, template in pod_templates(obj):
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "template": template}
            wrapped["metadata"] = {"name": "check"}
            out.append((f"{where}.{part}", wrapped))
    return out


@pytest.mark.parametrize("k8s_version", ["1.27.0", "1.33.0"])
def test_kubernetes_schemas_strict(k8s_version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate.utils", reason="pip install kubernetes-validate")
    subjects = _schema_subjects()
    assert len(subjects) >= 8
    problems = []
    for where, obj in subjects:
        try:
            kv.validate(obj, k8s_version, strict=True)
        except kv.ValidationError as exc:  # its repr holds the whole schema: keep the gist
            problems.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not problems, "\n".join(problems)
