"""The pure status function: what `kubectl get modelfleets` and `modelfleet status` will say."""

from __future__ import annotations

from typing import Any

from modelfleet.api.problems import Problem
from modelfleet.status import clean_message, fleet_status, status_document

FLEET = {
    "metadata": {"name": "chat", "namespace": "llm", "generation": 3},
    "spec": {"models": [{"name": "a"}, {"name": "b"}]},
}
TRACEBACK = (
    "\x1b[36mray::ServeReplica:b\x1b[0m Deploying app 'b' failed with exception:\n"
    "Traceback (most recent call last):\n  File \"/x.py\", line 3, in f\n    raise OSError('x')\n"
    "OSError: org/missing is not a local folder and is not a valid model identifier\n"
)


def rayservice(apps: dict[str, Any], ready: bool = False, upgrading: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if upgrading:
        conditions.append({"type": "UpgradeInProgress", "status": "True"})
    return {"status": {"conditions": conditions, "activeServiceStatus": {"applicationStatuses": apps}}}


def app(status: str, message: str = "") -> dict[str, Any]:
    return {"status": status, "message": message, "serveDeploymentStatuses": {}}


def test_no_rayservice_yet_is_pending() -> None:
    status = fleet_status(FLEET, None, now="t0")
    assert (status.phase, status.ready, status.endpoint) == ("Pending", "0/2", "")
    assert [m.state for m in status.models] == ["Pending", "Pending"]


def test_deploying_then_running() -> None:
    status = fleet_status(FLEET, rayservice({"a": app("DEPLOYING"), "fleet": app("RUNNING")}), now="t0")
    assert (status.phase, status.ready) == ("Deploying", "0/2")
    status = fleet_status(FLEET, rayservice({"a": app("RUNNING"), "b": app("RUNNING")}, ready=True), now="t1")
    assert (status.phase, status.ready) == ("Ready", "2/2")
    assert status.endpoint == "http://chat-serve-svc.llm.svc:8000/v1"
    assert status.observed_generation == 3


def test_one_failed_model_degrades_the_fleet_with_a_clean_message() -> None:
    status = fleet_status(
        FLEET, rayservice({"a": app("RUNNING"), "b": app("DEPLOY_FAILED", TRACEBACK)}), now="t"
    )
    assert (status.phase, status.ready) == ("Degraded", "1/2")
    failed = status.models[1]
    assert failed.state == "Failed"
    assert failed.message == "OSError: org/missing is not a local folder and is not a valid model identifier"
    assert "\x1b" not in failed.message and "Traceback" not in failed.message
    assert status.message.startswith("b: ")


def test_all_failed_is_failed_and_unhealthy_is_degraded() -> None:
    both = rayservice({"a": app("DEPLOY_FAILED", "x"), "b": app("DEPLOY_FAILED", "y")})
    assert fleet_status(FLEET, both, now="t").phase == "Failed"
    sick = rayservice({"a": app("RUNNING"), "b": app("UNHEALTHY", "replica died")})
    assert fleet_status(FLEET, sick, now="t").phase == "Degraded"


def test_upgrade_in_progress() -> None:
    rs = rayservice({"a": app("RUNNING"), "b": app("RUNNING")}, ready=True, upgrading=True)
    status = fleet_status(FLEET, rs, now="t")
    assert status.phase == "Upgrading"
    assert {c.type: c.status for c in status.conditions}["Upgrading"] == "True"


def test_scaled_to_zero_counts_as_ready_from_serve_details() -> None:
    details = {
        "applications": {
            "a": {
                "status": "RUNNING",
                "deployments": {
                    "LLMServer:a": {
                        "status": "HEALTHY",
                        "target_num_replicas": 1,
                        "replicas": [{"state": "RUNNING"}],
                    }
                },
            },
            "b": {
                "status": "RUNNING",
                "deployments": {
                    "LLMServer:b": {"status": "HEALTHY", "target_num_replicas": 0, "replicas": []}
                },
            },
        }
    }
    # The local backend (`modelfleet status`) has Serve's details and no KubeRay status.
    status = fleet_status(FLEET, {}, details, now="t")
    assert [(m.state, m.replicas) for m in status.models] == [("Ready", 1), ("ScaledToZero", 0)]
    assert (status.phase, status.ready) == ("Ready", "2/2")


def test_running_applications_without_serve_endpoints_are_not_ready() -> None:
    running = {"a": app("RUNNING"), "b": app("RUNNING")}
    initializing = rayservice(running)
    initializing["status"]["conditions"][0]["reason"] = "Initializing"
    status = fleet_status(FLEET, initializing, now="t")
    assert (status.phase, status.ready) == ("Deploying", "2/2")
    dropped = rayservice(running)
    dropped["status"]["conditions"][0]["reason"] = "ZeroServeEndpoints"
    assert fleet_status(FLEET, dropped, now="t").phase == "Degraded"
    assert fleet_status(FLEET, rayservice(running, ready=True), now="t").phase == "Ready"


def test_kuberay_refusing_the_rayservice_fails_the_fleet_with_its_message() -> None:
    refused = rayservice({})
    refused["status"]["conditions"][0].update(
        reason="ValidationFailed", message="The RayService spec is invalid: spec.rayClusterConfig.x"
    )
    status = fleet_status(FLEET, refused, now="t")
    assert status.phase == "Failed"
    assert (
        status.message == "KubeRay ValidationFailed: The RayService spec is invalid: spec.rayClusterConfig.x"
    )
    timed_out = rayservice({})
    timed_out["status"]["conditions"][0].update(reason="InitializingTimeout", message="not ready in 10m")
    assert fleet_status(FLEET, timed_out, now="t").phase == "Failed"


def test_a_new_rayservice_reports_the_pending_clusters_applications() -> None:
    """KubeRay keeps a new RayService's applications under pendingServiceStatus until it promotes the
    cluster; during an upgrade the active cluster's applications are the ones serving."""
    new = {
        "status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "Initializing"}],
            "activeServiceStatus": {},
            "pendingServiceStatus": {
                "rayClusterName": "chat-x",
                "applicationStatuses": {"a": app("RUNNING"), "b": app("DEPLOYING")},
            },
        }
    }
    assert [m.state for m in fleet_status(FLEET, new, now="t").models] == ["Ready", "Deploying"]
    upgrading = rayservice({"a": app("RUNNING"), "b": app("RUNNING")}, ready=True, upgrading=True)
    upgrading["status"]["activeServiceStatus"]["rayClusterName"] = "chat-x"
    upgrading["status"]["pendingServiceStatus"] = {"applicationStatuses": {"a": app("DEPLOYING")}}
    assert [m.state for m in fleet_status(FLEET, upgrading, now="t").models] == ["Ready", "Ready"]


def test_invalid_spec_names_the_field_and_keeps_models() -> None:
    problems = [Problem("spec.models[0].gpus", 2, "too many")]
    status = fleet_status(
        FLEET, rayservice({"a": app("RUNNING"), "b": app("RUNNING")}), problems=problems, now="t"
    )
    assert status.phase == "Invalid"
    spec_valid = next(c for c in status.conditions if c.type == "SpecValid")
    assert (spec_valid.status, spec_valid.message) == ("False", "spec.models[0].gpus: 2: too many")
    assert status.ready == "2/2", "the running RayService keeps serving"


def test_transition_times_survive_unchanged_status() -> None:
    rs = rayservice({"a": app("RUNNING"), "b": app("RUNNING")}, ready=True)
    first = status_document(fleet_status(FLEET, rs, now="2026-01-01T00:00:00Z"))
    second = status_document(fleet_status(FLEET, rs, previous=first, now="2026-01-01T00:05:00Z"))
    assert second == first, "an unchanged fleet must not be patched"
    degraded = rayservice({"a": app("RUNNING"), "b": app("UNHEALTHY", "x")})
    third = status_document(fleet_status(FLEET, degraded, previous=first, now="2026-01-01T00:09:00Z"))
    ready = next(c for c in third["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-01-01T00:09:00Z"


def test_clean_message_shortens() -> None:
    assert len(clean_message("x" * 1000)) == 300
    assert clean_message("\x1b[31mred\x1b[0m   text\n more") == "red text more"


def test_an_alias_shows_its_targets_with_the_state_of_what_serves_them() -> None:
    fleet = {
        "metadata": FLEET["metadata"],
        "spec": {
            "models": [{"name": "a", "adapters": [{"name": "a-ft", "source": "/x"}]}, {"name": "b"}],
            "aliases": [
                {
                    "name": "chat",
                    "targets": [
                        {"model": "a-ft", "weight": 9},
                        {"model": "b", "weight": 1},
                        {"model": "gone", "weight": 1},
                    ],
                },
                {"name": 7},  # malformed (an invalid fleet): skipped, not a crash
            ],
        },
    }
    status = fleet_status(fleet, rayservice({"a": app("RUNNING"), "b": app("DEPLOY_FAILED", "x")}), now="t")
    [alias] = status.aliases
    assert alias.name == "chat"
    assert [(t.model, t.weight, t.state) for t in alias.targets] == [
        ("a-ft", 9, "Ready"),  # an adapter is as ready as its model
        ("b", 1, "Failed"),
        ("gone", 1, "Unknown"),
    ]
    assert status_document(status)["aliases"][0]["targets"][0] == {
        "model": "a-ft",
        "weight": 9,
        "state": "Ready",
    }


# A fleet at its defaults on a cluster: one GPU group from zero workers, a CPU group for the small model.
WORKER_FLEET = {
    "metadata": {"name": "chat", "namespace": "llm", "generation": 1},
    "spec": {
        "models": [{"name": "big", "gpus": 0.5}, {"name": "small", "accelerator": "cpu"}],
        "workers": [{"name": "gpu", "gpusPerWorker": 1}, {"name": "cpu", "gpusPerWorker": 0}],
    },
}


def starting(node_id: str | None, target: int = 1, app_status: str = "DEPLOYING") -> dict[str, Any]:
    """Serve's details of a model application whose one replica is starting (on `node_id`, or not placed)."""
    return {
        "status": app_status,
        "deployments": {
            "LLMServer:x": {
                "status": "UPSCALING" if app_status == "RUNNING" else "UPDATING",
                "target_num_replicas": target,
                "replicas": [{"state": "STARTING", "node_id": node_id}],
            }
        },
    }


def test_workers_per_group_and_a_model_waiting_for_one() -> None:
    rs = rayservice({"big": app("DEPLOYING"), "small": app("DEPLOYING")})
    details = {"applications": {"big": starting(None), "small": starting("node-1")}}
    status = fleet_status(WORKER_FLEET, rs, details, now="t", worker_pods={"gpu": (0, 1), "cpu": (1, 1)})
    assert [(w.group, w.ready, w.desired) for w in status.workers] == [("gpu", 0, 1), ("cpu", 1, 1)]
    assert status.ready_workers == "1/2"
    big, small = status.models
    assert (big.state, big.message) == ("Deploying", "Waiting for a worker in group gpu (0/1 ready)")
    assert (small.state, small.message) == ("Deploying", "Loading the model")


def test_a_cpu_model_waits_for_the_group_that_is_adding_a_worker() -> None:
    details = {"applications": {"small": starting(None)}}
    rs = rayservice({"small": app("DEPLOYING")})
    status = fleet_status(WORKER_FLEET, rs, details, now="t", worker_pods={"cpu": (0, 1)})
    assert status.models[1].message == "Waiting for a worker in group cpu (0/1 ready)"
    # No group adding one yet (the autoscaler has not acted): the first group that can hold it.
    status = fleet_status(WORKER_FLEET, rs, details, now="t", worker_pods={})
    assert status.models[1].message == "Waiting for a worker in group gpu (0/0 ready)"


def test_a_fleet_asleep_on_zero_workers_is_ready_and_says_0_of_0() -> None:
    asleep = {
        "status": "RUNNING",
        "deployments": {"LLMServer:x": {"status": "HEALTHY", "target_num_replicas": 0, "replicas": []}},
    }
    rs = rayservice({"big": app("RUNNING"), "small": app("RUNNING")}, ready=True)
    details = {"applications": {"big": asleep, "small": asleep}}
    status = fleet_status(WORKER_FLEET, rs, details, now="t", worker_pods={})
    assert (status.phase, status.ready, status.ready_workers) == ("Ready", "2/2", "0/0")
    assert [(w.group, w.ready, w.desired) for w in status.workers] == [("gpu", 0, 0), ("cpu", 0, 0)]
    assert [m.state for m in status.models] == ["ScaledToZero", "ScaledToZero"]


def test_a_waking_model_stays_ready_to_answer_and_says_what_it_waits_for() -> None:
    """A request woke `big`: Serve wants a replica, none runs yet. The request waits and succeeds, so the
    fleet stays Ready; the model says it is waking and on what."""
    rs = rayservice({"big": app("RUNNING"), "small": app("RUNNING")}, ready=True)
    asleep = starting(None, target=0, app_status="RUNNING") | {"deployments": {}}
    waking = starting(None, target=1, app_status="RUNNING")
    status = fleet_status(
        WORKER_FLEET,
        rs,
        {"applications": {"big": waking, "small": asleep}},
        now="t",
        worker_pods={"gpu": (0, 1)},
    )
    assert status.phase == "Ready"
    big = status.models[0]
    assert (big.state, big.replicas) == ("ScaledToZero", 0)
    assert big.message == "Waking: waiting for a worker in group gpu (0/1 ready)"
    loading = starting("node-7", target=1, app_status="RUNNING")
    status = fleet_status(
        WORKER_FLEET, rs, {"applications": {"big": loading}}, now="t", worker_pods={"gpu": (1, 1)}
    )
    assert status.models[0].message == "Waking: loading the model"


def test_without_a_pod_watch_no_worker_status_is_claimed() -> None:
    status = fleet_status(WORKER_FLEET, rayservice({}), now="t")
    assert (status.workers, status.ready_workers) == ([], "")
    assert "workers" not in status_document(status) or status_document(status)["workers"] == []
