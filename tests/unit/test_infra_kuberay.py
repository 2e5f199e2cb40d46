"""The KubeRay deployment holds together: the nightly schedule, the IRSA service account,
the Ray cluster's ports and version, the RayJob on the shared cluster, the nightly spec and
its keys, the submit script, and (with kubectl) the kustomize renders."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "infra" / "kuberay"
NIGHTLY = KUBERAY / "nightly"
SCRIPT = NIGHTLY / "submit-nightly.sh"

Obj = dict[str, Any]


def docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def one(kind: str, name: str | None = None) -> Obj:
    found = [
        d
        for p in sorted(KUBERAY.rglob("*.yaml"))
        for d in docs(p)
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def cluster() -> Obj:
    return one("RayCluster")


def head_container() -> Obj:
    return cluster()["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def worker_containers() -> list[Obj]:
    return [g["template"]["spec"]["containers"][0] for g in cluster()["spec"]["workerGroupSpecs"]]


def cronjob() -> Obj:
    return one("CronJob")


def cron_pod() -> Obj:
    return cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]


# --- the nightly schedule -------------------------------------------------------------


def cron_field(field: str, lo: int, hi: int) -> set[int]:
    """The values one numeric cron field selects; raises on anything else."""
    values: set[int] = set()
    for part in field.split(","):
        m = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
        assert m, f"bad cron field {field!r}"
        start, end = (lo, hi) if m[1] == "*" else (int(m[2]), int(m[3] or m[2]))
        step = int(m[4] or 1)
        assert lo <= start <= end <= hi and step >= 1, f"cron field {field!r} out of {lo}-{hi}"
        values |= set(range(start, end + 1, step))
    return values


def test_cron_field_parser() -> None:
    assert cron_field("0", 0, 59) == {0}
    assert cron_field("*/15", 0, 59) == {0, 15, 30, 45}
    assert cron_field("1-3,5", 0, 23) == {1, 2, 3, 5}
    for bad in ("24", "1-", "a", "5-2", "*/0"):
        with pytest.raises(AssertionError):
            cron_field(bad, 0, 23)


def test_nightly_schedule_runs_once_a_night_and_never_overlaps() -> None:
    spec = cronjob()["spec"]
    fields = spec["schedule"].split()
    assert len(fields) == 5, "a 5-field cron expression, not a macro"
    minute, hour = cron_field(fields[0], 0, 59), cron_field(fields[1], 0, 23)
    assert len(minute) == 1 and len(hour) == 1, "once a day"
    assert hour <= set(range(0, 6)), "at night (00:00-05:59)"
    assert fields[2:] == ["*", "*", "*"], "every day"
    assert spec["timeZone"] in {"Etc/UTC", "UTC"}, "the script's `date -u` must agree"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] <= 6 * 3600
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a resubmission would start a second driver"
    assert job["activeDeadlineSeconds"] > 0
    assert cron_pod()["restartPolicy"] == "Never"


# --- service accounts ---------------------------------------------------------------


def test_ray_pods_use_the_irsa_service_account() -> None:
    sa = one("ServiceAccount", "tierline")
    arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", arn), arn
    head = cluster()["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["serviceAccountName"] == "tierline"
    for group in cluster()["spec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert pod["serviceAccountName"] == "tierline"
        assert pod["automountServiceAccountToken"] is False, "workers never call the API"


def test_submitters_get_no_role_and_no_token() -> None:
    sa = one("ServiceAccount", "tierline-submitter")
    assert "eks.amazonaws.com/role-arn" not in sa["metadata"].get("annotations", {})
    assert sa["automountServiceAccountToken"] is False
    submitter = one("RayJob")["spec"]["submitterPodTemplate"]["spec"]
    for pod in (cron_pod(), submitter):
        assert pod["serviceAccountName"] == "tierline-submitter"
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            assert not any("valueFrom" in e for e in c.get("env", [])), "no keys in submitters"


# --- the Ray cluster ----------------------------------------------------------------


def ports(container: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def test_ray_version_matches_the_image() -> None:
    dockerfile = (REPO / "infra" / "docker" / "Dockerfile").read_text()
    tags = set(re.findall(r"^FROM rayproject/ray:(\d+\.\d+\.\d+)-py\d+", dockerfile, re.M))
    assert tags == {cluster()["spec"]["rayVersion"]}


def test_metrics_port_is_exposed_and_announced() -> None:
    rc = cluster()["spec"]
    groups = [rc["headGroupSpec"], *rc["workerGroupSpecs"]]
    for group, c in zip(groups, [head_container(), *worker_containers()], strict=True):
        port = int(group["rayStartParams"]["metrics-export-port"])
        assert ports(c)["metrics"] == port
        notes = group["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/port"] == str(port)
    assert ports(head_container())["dashboard"] == 8265
    assert rc["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def test_pod_monitor_scrapes_this_cluster() -> None:
    pm = one("PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"] == {
        "ray.io/cluster": cluster()["metadata"]["name"]
    }
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["honorLabels"] is True, "tierline's `job` label would become exported_job"


# --- the nightly job: spec, keys, script, wiring ----------------------------------------


def test_nightly_spec_is_valid_and_its_keys_reach_the_ray_pods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.engine.checks import check_spec
    from schemas.job import load_spec

    spec = load_spec(NIGHTLY / "nightly-tickets.yaml")
    needed = {p.api_key_env for p in spec.providers.values() if p.api_key_env}
    assert needed
    for name in needed:
        monkeypatch.setenv(name, "placeholder-for-the-check")
    assert check_spec(spec) == []  # prices known for every model
    for c in [head_container(), *worker_containers()]:
        env = env_of(c)
        for name in needed:
            assert "secretKeyRef" in env[name]["valueFrom"], (c["name"], name)
    root = env_of(cron_pod()["containers"][0])["TIERLINE_INPUT_ROOT"]["value"]
    assert spec.input.uri.startswith(root), "the placeholder input lives under the real root"


def mounts(pod: Obj, container: Obj) -> dict[str, str]:
    """mountPath -> ConfigMap name, for the ConfigMap volumes a container mounts."""
    volumes = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    return {
        m["mountPath"]: volumes[m["name"]]
        for m in container["volumeMounts"]
        if m["name"] in volumes
    }


def generated_configmap() -> tuple[str, set[str]]:
    kz = docs(KUBERAY / "kustomization.yaml")[0]
    (gen,) = kz["configMapGenerator"]
    assert kz["generatorOptions"]["disableNameSuffixHash"] is True, "mounted by name in a CRD"
    for f in gen["files"]:
        assert (KUBERAY / f).is_file(), f
    return gen["name"], {Path(f).name for f in gen["files"]}


def test_cronjob_runs_the_mounted_script_against_the_head() -> None:
    cm_name, keys = generated_configmap()
    pod = cron_pod()
    (c,) = pod["containers"]
    env = {k: v["value"] for k, v in env_of(c).items()}
    (mount_path,) = [p for p, cm in mounts(pod, c).items() if cm == cm_name]
    assert c["command"] == ["/bin/bash", f"{mount_path}/{SCRIPT.name}"]
    assert SCRIPT.name in keys
    spec_dir, spec_key = env["TIERLINE_SPEC"].rsplit("/", 1)
    assert spec_dir == mount_path and spec_key in keys
    svc = f"{cluster()['metadata']['name']}-head-svc"  # KubeRay's name for the head service
    assert env["TIERLINE_RAY_DASHBOARD"] == f"http://{svc}:{ports(head_container())['dashboard']}"
    assert re.fullmatch(r"s3://[a-z0-9.-]{3,63}/([^/]+/)*", env["TIERLINE_INPUT_ROOT"])
    # The head mounts the same spec at the same path, for RayJobs that rerun a date.
    head_pod = cluster()["spec"]["headGroupSpec"]["template"]["spec"]
    assert mounts(head_pod, head_container()).get(mount_path) == cm_name


def test_rayjob_reruns_a_date_on_the_shared_cluster() -> None:
    job = one("RayJob")["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": cluster()["metadata"]["name"]}
    assert "rayClusterSpec" not in job and not job.get("shutdownAfterJobFinishes")
    assert job["submitterConfig"]["backoffLimit"] == 0
    assert job["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["tierline", "run"] and argv[3] == "--input" and len(argv) == 5
    cron_env = {k: v["value"] for k, v in env_of(cron_pod()["containers"][0]).items()}
    assert argv[2] == cron_env["TIERLINE_SPEC"], "the spec the head has mounted"
    assert re.fullmatch(re.escape(cron_env["TIERLINE_INPUT_ROOT"]) + r"\d{4}-\d\d-\d\d/", argv[4])


# --- the submit script --------------------------------------------------------------------


def run_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run submit-nightly.sh with a stand-in `tierline` that records its arguments."""
    bin_dir, record = tmp_path / "bin", tmp_path / "argv"
    bin_dir.mkdir(exist_ok=True)
    for name in ("tierline", "ray"):  # each call's argv, the program's name first
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\nprintf "%s\\n" {name} "$@" >> "{record}"\n')
        stub.chmod(0o755)
    record.unlink(missing_ok=True)
    base = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LC_ALL": "C"}
    proc = subprocess.run(
        ["bash", str(SCRIPT)], env=base | env, capture_output=True, text=True, timeout=30
    )
    return proc, record.read_text().splitlines() if record.exists() else []


NIGHT_ENV = {
    "TIERLINE_SPEC": "/etc/tierline/nightly/nightly-tickets.yaml",
    "TIERLINE_INPUT_ROOT": "s3://acme-support/tickets/",
    "TIERLINE_RAY_DASHBOARD": "http://tierline-head-svc:8265",
}


def test_script_puts_the_date_into_the_input_prefix(tmp_path: Path) -> None:
    proc, argv = run_script(tmp_path, **NIGHT_ENV, TIERLINE_DATE="2026-11-27")
    assert proc.returncode == 0, proc.stderr
    assert argv == [
        "tierline",
        "submit",
        NIGHT_ENV["TIERLINE_SPEC"],
        "--address",
        NIGHT_ENV["TIERLINE_RAY_DASHBOARD"],
        "--input",
        "s3://acme-support/tickets/2026-11-27/",
        "--job-id",
        "nightly-2026-11-27",
        "--wait",
    ]  # and no retrain: no router named


def test_script_retrains_the_router_on_the_cluster_after_the_night(tmp_path: Path) -> None:
    router = "s3://acme-models/router.npz"
    env = NIGHT_ENV | {"TIERLINE_ROUTER_URI": router, "TIERLINE_DATE": "2026-11-27"}
    proc, _ = run_script(tmp_path, **env)
    assert proc.returncode != 0 and "TIERLINE_OUTPUT_ROOT" in proc.stderr
    proc, argv = run_script(tmp_path, **env, TIERLINE_OUTPUT_ROOT="s3://acme-support/tierline/")
    assert proc.returncode == 0, proc.stderr
    retrain = argv[argv.index("ray") :]
    assert retrain[:2] == ["ray", "job"] and "--" in retrain
    command = retrain[retrain.index("--") + 1 :]
    assert command == [
        "tierline", "router", "train",
        "--run", "s3://acme-support/tierline/nightly-2026-11-27", "--cascade",
        "--against", router, "--out", router,
    ]  # fmt: skip


def test_script_defaults_to_today_utc(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC).date().isoformat()
    proc, argv = run_script(tmp_path, **(NIGHT_ENV | {"TIERLINE_INPUT_ROOT": "s3://b-1/t"}))
    after = dt.datetime.now(dt.UTC).date().isoformat()
    assert proc.returncode == 0, proc.stderr
    assert argv[argv.index("--input") + 1] in {f"s3://b-1/t/{before}/", f"s3://b-1/t/{after}/"}


@pytest.mark.parametrize(
    "day", ["2026-02-30", "2026-13-01", "27-11-2026", "../../x", "2026-11-27/"]
)
def test_script_refuses_a_bad_date(tmp_path: Path, day: str) -> None:
    proc, argv = run_script(tmp_path, **NIGHT_ENV, TIERLINE_DATE=day)
    assert proc.returncode == 2 and argv == [], proc.stderr


def test_script_needs_its_settings(tmp_path: Path) -> None:
    for missing in NIGHT_ENV:
        env = {k: v for k, v in NIGHT_ENV.items() if k != missing}
        proc, argv = run_script(tmp_path, **env, TIERLINE_DATE="2026-11-27")
        assert proc.returncode != 0 and argv == [] and missing in proc.stderr


def test_shell_scripts_lint() -> None:
    scripts = sorted((REPO / "infra").rglob("*.sh"))
    assert SCRIPT in scripts
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (bash -n passed)")
    subprocess.run(["shellcheck", *map(str, scripts)], check=True, timeout=60)


# --- kustomize -----------------------------------------------------------------------------


def test_kustomizations_list_every_manifest() -> None:
    listed = {KUBERAY / r for r in docs(KUBERAY / "kustomization.yaml")[0]["resources"]}
    listed |= {
        KUBERAY / "adhoc" / r
        for r in docs(KUBERAY / "adhoc" / "kustomization.yaml")[0]["resources"]
    }
    top = {p for p in KUBERAY.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert top | {KUBERAY / "adhoc" / "rayjob.yaml"} == listed


def kustomize(path: Path) -> list[Obj]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_kustomize_renders_namespace_and_configmap() -> None:
    objs = kustomize(KUBERAY) + kustomize(KUBERAY / "adhoc")
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tierline", obj["metadata"]["name"]
    cm_name, keys = generated_configmap()
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == cm_name]
    assert set(cm["data"]) == keys
    for key in keys:
        assert cm["data"][key] == (NIGHTLY / key).read_text()


def test_image_component_sets_every_container(tmp_path: Path) -> None:
    copy = tmp_path / "kuberay"
    shutil.copytree(KUBERAY, copy)
    comp = copy / "image" / "kustomization.yaml"
    text = re.sub(r"newName: .*", "newName: example.test/sentinel/tierline", comp.read_text())
    comp.write_text(re.sub(r"newTag: .*", 'newTag: "9.9.9-check"', text))
    images = []
    for obj in kustomize(copy) + kustomize(copy / "adhoc"):
        images += re.findall(r"\bimage: (\S+)", yaml.safe_dump(obj))
    assert len(images) >= 4
    assert set(images) == {"example.test/sentinel/tierline:9.9.9-check"}
