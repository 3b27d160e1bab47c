"""The operator end to end: kubectl apply a fleet, watch the RayService and the status follow.

KubeRay is not running here: its side is played by patching the RayService's /status with the shapes
KubeRay v1.7.0 writes (../shared/kuberay/rayservice_status_shape.json)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from tests.kube.apiserver import ApiServer
from tests.kube.conftest import REPO, Kube, Operator, wait_for
from tests.support.kuberay import rayservice_status

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("operator")]
RS = "rayservices.v1.ray.io"  # explicit version: KubeRay also serves the deprecated v1alpha1

EXAMPLE = yaml.safe_load((REPO / "examples" / "cluster" / "two-models-one-gpu.yaml").read_text())
SERVE_TRACEBACK = (
    "\x1b[36mray::ServeController\x1b[0m Deploying app 'falcon3-1b' failed with exception:\n"
    'Traceback (most recent call last):\n  File "vllm/engine.py", line 10, in load\n'
    "OSError: tiiuae/Falcon3-1B-Instruct is not a local folder and is not a valid model identifier\n"
)


def fleet(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name}
    return doc


def apply(kube: Kube, doc: dict[str, Any], check: bool = True) -> Any:
    return kube.run("apply", "-f", "-", stdin=yaml.safe_dump(doc), check=check)


def rayservice(kube: Kube, name: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(lambda: kube.get(RS, name), what=f"RayService {name}")
    return found


def kuberay_status(kube: Kube, name: str, apps: dict[str, tuple[str, str]], ready: bool) -> None:
    """Write a RayService status as KubeRay does."""
    patch = json.dumps(rayservice_status(name, apps, ready=ready))
    kube.run("patch", RS, name, "--subresource=status", "--type=merge", "-p", patch)


def wait_jsonpath(kube: Kube, name: str, path: str, value: str, timeout: int = 30) -> None:
    kube.run(
        "wait",
        f"modelfleet/{name}",
        f"--for=jsonpath={path}={value}",
        f"--timeout={timeout}s",
        timeout=timeout + 10,
    )


def test_apply_creates_an_owned_rayservice(kube: Kube) -> None:
    apply(kube, fleet("chat"))
    rs = rayservice(kube, "chat")
    mf = kube.get("modelfleet", "chat")
    assert mf is not None
    owner = rs["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ModelFleet",
        "chat",
        mf["metadata"]["uid"],
        True,
    )
    assert rs["metadata"]["labels"]["modelfleet.dev/fleet"] == "chat"
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert [app["name"] for app in serve["applications"]] == ["falcon3-1b", "qwen-0-5b", "fleet"]
    assert rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] == 0
    wait_jsonpath(kube, "chat", "{.status.phase}", "Deploying")


def test_status_follows_kuberay(kube: Kube) -> None:
    rayservice(kube, "chat")
    kuberay_status(
        kube, "chat", {"qwen-0-5b": ("DEPLOYING", ""), "falcon3-1b": ("DEPLOYING", "")}, ready=False
    )
    wait_jsonpath(kube, "chat", "{.status.models[0].state}", "Deploying")
    kuberay_status(kube, "chat", {"qwen-0-5b": ("RUNNING", ""), "falcon3-1b": ("RUNNING", "")}, ready=True)
    wait_jsonpath(kube, "chat", "{.status.phase}", "Ready")
    wait_jsonpath(kube, "chat", "{.status.ready}", "2/2")
    table = kube.run("get", "modelfleets").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "PHASE", "ENDPOINT", "AGE"]
    row = table[1].split()
    assert row[:4] == ["chat", "2/2", "Ready", f"http://chat-serve-svc.{kube.namespace}.svc:8000/v1"]
    wide = kube.run("get", "mf", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "PHASE", "ENDPOINT", "AGE", "RAYSERVICE", "MESSAGE"]


def test_a_failed_model_degrades_the_fleet(kube: Kube) -> None:
    kuberay_status(
        kube,
        "chat",
        {"qwen-0-5b": ("RUNNING", ""), "falcon3-1b": ("DEPLOY_FAILED", SERVE_TRACEBACK)},
        ready=True,
    )
    wait_jsonpath(kube, "chat", "{.status.phase}", "Degraded")
    mf = kube.get("modelfleet", "chat")
    assert mf is not None
    states = {m["name"]: (m["state"], m.get("message", "")) for m in mf["status"]["models"]}
    assert states["qwen-0-5b"] == ("Ready", "")
    state, message = states["falcon3-1b"]
    assert state == "Failed"
    assert message.endswith(
        "OSError: tiiuae/Falcon3-1B-Instruct is not a local folder and is not a valid model identifier"
    )
    assert "\x1b" not in message
    assert mf["status"]["ready"] == "1/2"
    events = kube.run("get", "events", "--field-selector", "involvedObject.name=chat", "-o", "json").stdout
    assert "ModelFailed" in events


def test_schema_and_cel_violations_are_refused_by_kubectl(kube: Kube) -> None:
    bad = fleet("refused")
    bad["spec"]["models"][0]["replicas"] = {"min": 3, "max": 1}
    result = apply(kube, bad, check=False)
    assert result.returncode != 0
    assert (
        "spec.models[0].replicas.min" in result.stderr
        and "min must be less than or equal to max" in result.stderr
    )
    bad = fleet("refused")
    bad["spec"]["models"][1]["name"] = "v1"
    result = apply(kube, bad, check=False)
    assert result.returncode != 0 and "spec.models[1].name" in result.stderr
    assert kube.get("modelfleet", "refused") is None


def test_semantic_invalid_update_leaves_the_rayservice_untouched(kube: Kube) -> None:
    before = rayservice(kube, "chat")["spec"]
    bad = fleet("chat")
    bad["spec"]["models"][0]["engineArgs"]["gpu_memory_utilization"] = 0.9
    apply(kube, bad)
    wait_jsonpath(kube, "chat", "{.status.phase}", "Invalid")
    mf = kube.get("modelfleet", "chat")
    assert mf is not None
    spec_valid = next(c for c in mf["status"]["conditions"] if c["type"] == "SpecValid")
    assert spec_valid["status"] == "False"
    assert spec_valid["message"].startswith("spec.models[0].engineArgs.gpu_memory_utilization: 0.9:")
    assert json.dumps(rayservice(kube, "chat")["spec"], sort_keys=True) == json.dumps(before, sort_keys=True)
    apply(kube, fleet("chat"))
    wait_jsonpath(kube, "chat", '{.status.conditions[?(@.type=="SpecValid")].status}', "True")


def test_editing_one_model_changes_only_serve_config(kube: Kube) -> None:
    before = rayservice(kube, "chat")["spec"]
    edited = fleet("chat")
    edited["spec"]["models"][0]["engineArgs"]["max_model_len"] = 4096
    apply(kube, edited)
    after = wait_for(
        lambda: (s := rayservice(kube, "chat")["spec"])["serveConfigV2"] != before["serveConfigV2"] and s,
        what="serveConfigV2 to change",
    )
    assert after["rayClusterConfig"] == before["rayClusterConfig"]
    assert "max_model_len: 4096" in after["serveConfigV2"]


def test_drift_is_reverted(kube: Kube) -> None:
    wanted = rayservice(kube, "chat")["spec"]
    edit = [
        {"op": "replace", "path": "/spec/rayClusterConfig/workerGroupSpecs/0/maxReplicas", "value": 9},
        {"op": "replace", "path": "/spec/serveConfigV2", "value": "applications: []\n"},
    ]
    kube.run("patch", RS, "chat", "--type=json", "-p", json.dumps(edit))

    def reverted() -> dict[str, Any] | None:
        spec = rayservice(kube, "chat")["spec"]
        return spec if spec["serveConfigV2"] == wanted["serveConfigV2"] else None

    spec = wait_for(reverted, what="the hand edit to be reverted")
    assert spec["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 2


def test_deleting_the_fleet_deletes_the_rayservice(kube: Kube) -> None:
    apply(kube, fleet("short-lived"))
    rayservice(kube, "short-lived")
    kube.run("delete", "modelfleet", "short-lived")
    wait_for(lambda: kube.get(RS, "short-lived") is None, what="garbage collection of the RayService")


def test_operator_recovers_from_an_api_server_outage(kube: Kube, apiserver: ApiServer | None) -> None:
    if apiserver is None:
        pytest.skip("a real API server cannot be stopped from a test")
    apply(kube, fleet("outage"))
    rayservice(kube, "outage")
    with apiserver.outage():
        wait_for(
            lambda: kube.run("get", "mf", "outage", check=False, timeout=20).returncode != 0,
            what="the API server to go down",
        )
    # Back up, same stored objects: the operator must notice changes again without being restarted.
    apply(kube, fleet("after-outage"))
    rayservice(kube, "after-outage")
    kuberay_status(kube, "outage", {"qwen-0-5b": ("RUNNING", ""), "falcon3-1b": ("RUNNING", "")}, ready=True)
    wait_jsonpath(kube, "outage", "{.status.phase}", "Ready", timeout=60)


def test_operator_killed_mid_way_converges_without_duplicates(kube: Kube, operator: Operator) -> None:
    names = [f"bulk-{i:02d}" for i in range(50)]
    kube.run("apply", "-f", "-", stdin=yaml.safe_dump_all([fleet(n) for n in names]))
    wait_for(
        lambda: len([r for r in kube.items(RS) if r["metadata"]["name"].startswith("bulk-")]) >= 5,
        what="the operator to start on the bulk fleets",
    )
    operator.kill()
    operator.start()

    def converged() -> bool:
        services = [
            r["metadata"]["name"] for r in kube.items(RS) if r["metadata"]["name"].startswith("bulk-")
        ]
        fleets = [f for f in kube.items("modelfleets") if f["metadata"]["name"].startswith("bulk-")]
        phases = {f["metadata"]["name"]: (f.get("status") or {}).get("phase") for f in fleets}
        return sorted(services) == names and all(phases.get(n) == "Deploying" for n in names)

    wait_for(converged, timeout=180, what="50 fleets to converge after the restart")
    kube.run("delete", "modelfleets", "-l", "!nonexistent", "--wait=false")
