"""Rendering behaviour a platform engineer relies on: determinism, what a model change touches,
secrets only by reference, labels, scale-to-zero bounds and the args contract's shape."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet import yamlio
from modelfleet.api.v1alpha1 import ModelFleet
from modelfleet.render import FLEET_LABEL, render, render_all, render_config_map, render_yaml
from tests.unit.conftest import CASES, HERE


def shuffled(node: Any, rng: random.Random) -> Any:
    """The same data with every mapping's keys in a random order (lists keep their order)."""
    if isinstance(node, dict):
        keys = list(node)
        rng.shuffle(keys)
        return {key: shuffled(node[key], rng) for key in keys}
    if isinstance(node, list):
        return [shuffled(item, rng) for item in node]
    return node


def document(case: Path) -> dict[str, Any]:
    return yamlio.load_file(case)[0]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_render_is_deterministic_and_ignores_key_order(case: Path) -> None:
    doc = document(case)
    first = render_yaml(ModelFleet.model_validate(doc))
    assert render_yaml(ModelFleet.model_validate(doc)) == first
    for seed in range(5):
        again = render_yaml(ModelFleet.model_validate(shuffled(doc, random.Random(seed))))
        assert again == first, f"key order changed the output (seed {seed})"


def test_model_order_does_not_change_the_output() -> None:
    doc = document(HERE / "cases" / "two-models-one-gpu.yaml")
    first = render_yaml(ModelFleet.model_validate(doc))
    doc["spec"]["models"].reverse()
    assert render_yaml(ModelFleet.model_validate(doc)) == first


def test_editing_a_model_changes_only_serve_config() -> None:
    doc = document(HERE / "cases" / "two-models-one-gpu.yaml")
    before = render(ModelFleet.model_validate(doc))
    doc["spec"]["models"][0]["engineArgs"]["max_model_len"] = 2048
    doc["spec"]["models"][1]["replicas"] = {"min": 0, "max": 3}
    after = render(ModelFleet.model_validate(doc))
    assert after["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]
    assert after["spec"]["serveConfigV2"] != before["spec"]["serveConfigV2"]


def test_secrets_are_rendered_only_as_references() -> None:
    fleet = ModelFleet.model_validate(document(HERE / "cases" / "secrets-and-cache.yaml"))
    rayservice = render(fleet)
    serve = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    assert "hf" not in str(serve["applications"])
    # The serving app is told which mounted files hold keys, never a key.
    files = ["llm-keys/key", "llm-keys/team-a", "team-b-key/key"]
    assert [app["args"]["front_door"]["api_keys"] for app in serve["applications"]] == [files, files]
    for pod in pods(rayservice):
        spec = pod["spec"]
        container = spec["containers"][0]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert refs == {"HF_TOKEN": {"name": "hf", "key": "token"}}
        assert {"name": "HF_HOME", "value": "/cache"} in container["env"]
        assert {"name": "MODELFLEET_API_KEYS_DIR", "value": "/etc/modelfleet/api-keys"} in container["env"]
        # Keys are mounted (so an edited Secret reaches running replicas), read-only, not world-readable.
        assert {"name": "api-keys", "mountPath": "/etc/modelfleet/api-keys", "readOnly": True} in container[
            "volumeMounts"
        ]
        (keys,) = [v for v in spec["volumes"] if v["name"] == "api-keys"]
        assert keys["projected"]["defaultMode"] == 0o440
        mounted = {
            (source["secret"]["name"], item["key"]): item["path"]
            for source in keys["projected"]["sources"]
            for item in source["secret"]["items"]
        }
        assert mounted == {
            ("llm-keys", "key"): "llm-keys/key",
            ("llm-keys", "team-a"): "llm-keys/team-a",
            ("team-b-key", "key"): "team-b-key/key",
        }


def test_a_fleet_without_keys_mounts_none() -> None:
    rayservice = render(ModelFleet.model_validate(document(HERE / "cases" / "single-model.yaml")))
    for pod in pods(rayservice):
        assert all(v["name"] != "api-keys" for v in pod["spec"]["volumes"])
    serve = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    assert all(app["args"]["front_door"]["api_keys"] == [] for app in serve["applications"])


def pods(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    config = rayservice["spec"]["rayClusterConfig"]
    return [config["headGroupSpec"]["template"]] + [g["template"] for g in config["workerGroupSpecs"]]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_every_pod_is_non_root_and_labelled(case: Path) -> None:
    fleet = ModelFleet.model_validate(document(case))
    rayservice = render(fleet)
    assert rayservice["metadata"]["labels"][FLEET_LABEL] == fleet.metadata.name
    for pod in pods(rayservice):
        assert pod["metadata"]["labels"][FLEET_LABEL] == fleet.metadata.name
        # KubeRay labels its pods app.kubernetes.io/name=kuberay and selects them by it (the RayService's
        # head Service): a template label there would leave that Service without endpoints.
        assert not {"app.kubernetes.io/name", "app.kubernetes.io/created-by"} & set(pod["metadata"]["labels"])
        assert not [key for key in pod["metadata"]["labels"] if key.startswith("ray.io/")]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in pod["spec"]["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_scale_to_zero_reaches_zero_on_both_levels() -> None:
    rayservice = render(ModelFleet.model_validate(document(HERE / "cases" / "scale-to-zero.yaml")))
    config = rayservice["spec"]["rayClusterConfig"]
    assert config["enableInTreeAutoscaling"] is True
    group = config["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["replicas"], group["maxReplicas"]) == (0, 0, 4)
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    app = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]
    assert app["args"]["replicas"]["min"] == 0 and app["args"]["replicas"]["max"] == 4


def test_defaults_a_user_expects() -> None:
    fleet = ModelFleet.model_validate(document(HERE / "cases" / "single-model.yaml"))
    model, group = fleet.spec.models[0], fleet.spec.workers[0]
    assert model.replicas.min == 1, "scale-to-zero is opt-in"
    assert group.min_workers == 0, "GPU worker groups may scale to zero by default"
    assert model.gpu_share == 1.0 and model.accelerator == "gpu"
    rayservice = render(fleet)
    assert rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


@pytest.mark.parametrize("case", ["high-throughput.yaml", "single-model.yaml"], ids=["explicit", "default"])
def test_high_throughput_sets_ray_env_on_every_pod(case: str) -> None:
    rayservice = render(ModelFleet.model_validate(document(HERE / "cases" / case)))
    for pod in pods(rayservice):
        names = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert names["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        assert names["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
        # Each model server becomes its app's ingress (serving_app/server.py adds auth, /healthz, /v1/infer).
        assert names["RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING"] == "1"


def test_high_throughput_runs_haproxy_through_the_fleets_config_map_on_every_pod() -> None:
    fleet = ModelFleet.model_validate(document(HERE / "cases" / "high-throughput.yaml"))
    config_map = render_config_map(fleet)
    assert config_map is not None and config_map["metadata"]["name"] == "fast-haproxy"
    # The routes: the fleet's model under its prefix, and how long HAProxy waits for a body to read.
    routes = json.loads(config_map["data"]["unified-routes.json"])
    assert routes == {"models": {"qwen-7b": "/qwen-7b"}, "body_timeout_s": 30.0, "api_keys": []}
    assert config_map["data"]["haproxy"].startswith("#!/bin/sh\n")
    for pod in pods(render(fleet)):
        spec = pod["spec"]
        (volume,) = [v for v in spec["volumes"] if v.get("configMap")]
        assert volume["configMap"] == {"name": "fast-haproxy", "defaultMode": 0o555}
        container = spec["containers"][0]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        env = {e["name"]: e.get("value") for e in container["env"]}
        # Ray runs the wrapper from the mounted ConfigMap as its HAProxy binary.
        assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == f"{mount['mountPath']}/haproxy"
        assert mount["readOnly"] is True


def test_high_throughput_off_keeps_the_standard_path() -> None:
    raw = document(HERE / "cases" / "high-throughput.yaml")
    raw["spec"]["highThroughput"] = False
    fleet = ModelFleet.model_validate(raw)
    for pod in pods(render(fleet)):
        names = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
        assert not names & {
            "RAY_SERVE_ENABLE_HA_PROXY",
            "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING",
            "RAY_SERVE_HAPROXY_BINARY_PATH",
        }
        assert not [v for v in pod["spec"]["volumes"] if v.get("configMap")]
    assert render_config_map(fleet) is None
    assert [o["kind"] for o in render_all(fleet)] == ["RayService", "NetworkPolicy"]


def test_workers_give_up_a_lost_head_soon() -> None:
    """Without GCS fault tolerance a worker cannot rejoin a restarted head: it should exit and be replaced
    well before Ray's 60 s default (tests/e2e measures the recovery)."""
    rayservice = render(ModelFleet.model_validate(document(HERE / "cases" / "two-worker-groups.yaml")))
    config = rayservice["spec"]["rayClusterConfig"]
    for group in config["workerGroupSpecs"]:
        env = {e["name"]: e.get("value") for e in group["template"]["spec"]["containers"][0]["env"]}
        assert int(env["RAY_gcs_rpc_server_reconnect_timeout_s"]) <= 30
    head_env = config["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert "RAY_gcs_rpc_server_reconnect_timeout_s" not in {e["name"] for e in head_env}


def _variants(change: Any = None) -> dict[str, Any]:
    doc = document(HERE / "cases" / "adapters-and-aliases.yaml")
    if change is not None:
        change(doc["spec"])
    return render(ModelFleet.model_validate(doc))


def _router_args(rayservice: dict[str, Any]) -> dict[str, Any]:
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    return next(a["args"] for a in config["applications"] if a["name"] == "fleet")


def test_changing_an_alias_weight_changes_only_the_router_args() -> None:
    """New weights are an in-place Serve update of the router application: the Ray cluster, the model
    applications (their replicas and loaded adapters) stay as they are."""
    before = _variants()
    after = _variants(lambda spec: spec["aliases"][0]["targets"][1].update(weight=50))
    assert after["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]
    apps_before = yaml.safe_load(before["spec"]["serveConfigV2"])["applications"]
    apps_after = yaml.safe_load(after["spec"]["serveConfigV2"])["applications"]
    changed = [a["name"] for a, b in zip(apps_before, apps_after, strict=True) if a != b]
    assert changed == ["fleet"]
    assert _router_args(after)["aliases"]["chat"] == [
        {"model": "chat-v1", "weight": 90},
        {"model": "chat-v2", "weight": 50},
    ]


def test_adapters_and_prefix_routing_turn_on_what_they_need() -> None:
    rayservice = _variants()
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    v1 = next(a["args"] for a in config["applications"] if a["name"] == "chat-v1")
    assert v1["adapters"] == {
        "sql-writer": "acme/qwen-sql-lora",
        "support-bot": "/models/adapters/support-bot",
    }
    assert (v1["routing"], v1["max_adapters_per_replica"]) == ("prefix_aware", 2)
    assert _router_args(rayservice)["adapters"] == {"sql-writer": "chat-v1", "support-bot": "chat-v1"}
    # No pod change: HAProxy is never told to forward bodies to the request router (it would hold a slow
    # client's body for up to the wake bound, past limits.bodyTimeoutSeconds).
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY" not in {e["name"] for e in head["env"]}


def test_the_router_knows_the_task_of_each_model_that_does_not_generate() -> None:
    """So the fleet's endpoint answers a chat request to an embedding model with a 400 naming its task."""
    from modelfleet_contract.args import RouterAppArgs

    def embed_v2(spec: dict[str, Any]) -> None:
        spec["models"][1]["task"] = "embed"
        spec["models"][1].pop("adapters", None)
        spec["aliases"] = []

    args = _router_args(_variants(embed_v2))
    assert args["tasks"] == {"chat-v2": "embed"}
    tasks = RouterAppArgs.model_validate(args).name_tasks()
    assert tasks["chat-v2"] == "embed" and tasks["chat-v1"] == tasks["sql-writer"] == "generate"
