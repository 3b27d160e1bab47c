"""The statuses KubeRay writes for a serving, a failing and a refused RayService, mapped onto the fleet
through the real API server: phase, per-model states, printer columns and Events.

Without a kubelet no Ray cluster serves here, so for this module the real KubeRay operator is stopped and
the test writes the RayService status in KubeRay's shape (`tests/support/kuberay.py`); a running KubeRay
would overwrite it within its 2 s resync. The end-to-end tests (tests/e2e) see the same statuses written
by KubeRay itself from running Ray clusters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.kube.conftest import Kube
from tests.kube.test_operator import RS, apply, events_for, fleet, rayservice, wait_jsonpath
from tests.support.kuberay import rayservice_status

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("kuberay_stopped", "operator")]
SERVE_TRACEBACK = (
    "\x1b[36mray::ServeController\x1b[0m Deploying app 'falcon3-1b' failed with exception:\n"
    'Traceback (most recent call last):\n  File "vllm/engine.py", line 10, in load\n'
    "OSError: tiiuae/Falcon3-1B-Instruct is not a local folder and is not a valid model identifier\n"
)


@pytest.fixture(scope="module")
def kuberay_stopped(control_plane: ControlPlane | None) -> Iterator[None]:
    if control_plane is None:
        pytest.skip("plays KubeRay's part, which needs the local control plane's KubeRay stopped")
    control_plane.kuberay.stop()
    yield
    control_plane.kuberay.start()


def kuberay_writes(
    kube: Kube, name: str, apps: dict[str, tuple[str, str]], ready: bool, **extra: str
) -> None:
    """Write a RayService status as KubeRay does."""
    body = rayservice_status(name, apps, ready=ready)
    body["status"]["conditions"][0].update(extra)
    kube.run("patch", RS, name, "--subresource=status", "--type=merge", "-p", json.dumps(body))


def test_status_follows_kuberay_to_ready(kube: Kube) -> None:
    apply(kube, fleet("chat"))
    rayservice(kube, "chat")
    kuberay_writes(
        kube, "chat", {"qwen-0-5b": ("DEPLOYING", ""), "falcon3-1b": ("DEPLOYING", "")}, ready=False
    )
    wait_jsonpath(kube, "chat", "{.status.models[0].state}", "Deploying")
    # Every application RUNNING but no serve endpoint yet: requests could not reach them, not Ready.
    running = {"qwen-0-5b": ("RUNNING", ""), "falcon3-1b": ("RUNNING", "")}
    kuberay_writes(kube, "chat", running, ready=False, reason="Initializing")
    wait_jsonpath(kube, "chat", "{.status.ready}", "2/2")
    wait_jsonpath(kube, "chat", "{.status.phase}", "Deploying")
    kuberay_writes(kube, "chat", running, ready=True)
    wait_jsonpath(kube, "chat", "{.status.phase}", "Ready")
    table = kube.run("get", "modelfleets").stdout.splitlines()
    assert table[1].split()[:4] == [
        "chat",
        "2/2",
        "Ready",
        f"http://chat-serve-svc.{kube.namespace}.svc:8000/v1",
    ]
    assert any(e["reason"] == "FleetReady" for e in events_for(kube, "chat"))


def test_a_failed_model_degrades_the_fleet(kube: Kube) -> None:
    kuberay_writes(
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
    wide = kube.run("get", "mf", "chat", "-o", "wide").stdout.splitlines()[1]
    assert "falcon3-1b: OSError" in wide
    assert any(e["reason"] == "ModelFailed" and e["type"] == "Warning" for e in events_for(kube, "chat"))


def test_serve_endpoints_dropping_to_zero_degrades_the_fleet(kube: Kube) -> None:
    running = {"qwen-0-5b": ("RUNNING", ""), "falcon3-1b": ("RUNNING", "")}
    kuberay_writes(kube, "chat", running, ready=False, reason="ZeroServeEndpoints")
    wait_jsonpath(kube, "chat", "{.status.phase}", "Degraded")


def test_kuberay_refusing_the_rayservice_fails_the_fleet(kube: Kube) -> None:
    kuberay_writes(
        kube, "chat", {}, ready=False, reason="ValidationFailed", message="spec.rayClusterConfig is invalid"
    )
    wait_jsonpath(kube, "chat", "{.status.phase}", "Failed")
    mf = kube.get("modelfleet", "chat")
    assert mf is not None
    assert mf["status"]["message"] == "KubeRay ValidationFailed: spec.rayClusterConfig is invalid"
