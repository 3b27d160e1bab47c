"""The emulated API server, driven with the real kubectl and the kubernetes Python client."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.kube.apiserver import ApiServer
from tests.kube.apiserver.conftest import KUBECTL, Kubectl
from tests.kube.apiserver.widgets import CRD, GROUP, PLURAL, VERSION, widget

pytestmark = pytest.mark.kube

DEADLINE = 20.0


def wait_for(condition: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll `condition` until it returns something truthy, failing after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def api(apiserver: ApiServer) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig_path))
    with client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def widget_crd(apiserver: ApiServer, api: kubernetes.client.ApiClient) -> None:
    del apiserver  # ordering only
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)


@pytest.fixture
def custom(api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


def create(custom: kubernetes.client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    return obj


def get(custom: kubernetes.client.CustomObjectsApi, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return obj


def test_apply_then_get_prints_printer_columns(kubectl: Kubectl) -> None:
    applied = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(widget("w-apply", size="large")))
    assert "widget.test.modelfleet.dev/w-apply created" in applied.stdout
    again = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(widget("w-apply", size="large")))
    assert "unchanged" in again.stdout
    kubectl(
        "patch",
        "widget",
        "w-apply",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready", "message": "all good"}}',
    )
    table = kubectl("get", "widgets").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE"]
    assert next(line for line in table if line.startswith("w-apply")).split() == ["w-apply", "large", "Ready"]
    wide = kubectl("get", "wg", "w-apply", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "PHASE", "MESSAGE"]
    assert wide[1].split() == ["w-apply", "large", "Ready", "all", "good"]
    assert kubectl("get", "widget", "w-apply", "-o", "jsonpath={.spec.color}").stdout == "blue"  # defaulted
    applied_cfg = json.loads(kubectl("get", "widget", "w-apply", "-o", "json").stdout)
    assert "kubectl.kubernetes.io/last-applied-configuration" in applied_cfg["metadata"]["annotations"]
    assert "namespaces" in kubectl("get", "ns", "default").stdout or "default" in kubectl("get", "ns").stdout


def test_cel_and_schema_violations_are_422_naming_the_field(
    kubectl: Kubectl, custom: kubernetes.client.CustomObjectsApi
) -> None:
    bad = widget("w-bad", items=[{"name": "ok", "replicas": 1}, {"name": "too-many", "replicas": 9}])
    result = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    # kubectl rewrites the Status message from its causes, exactly as against kube-apiserver.
    assert (
        'The Widget "w-bad" is invalid: spec.items[1].replicas: Invalid value: "integer": '
        "at most 8 replicas per item"
    ) in result.stderr
    with pytest.raises(ApiException) as info:
        create(custom, widget("w-bad2", size="huge", items=[{"name": "forbidden", "replicas": 1}]))
    assert info.value.status == 422
    status = json.loads(info.value.body)
    assert status["reason"] == "Invalid"
    assert {c["field"] for c in status["details"]["causes"]} == {"spec.size", "spec.items[0].name"}


def test_transition_rule_sees_old_self(custom: kubernetes.client.CustomObjectsApi) -> None:
    create(custom, widget("w-immutable", items=[{"name": "a", "replicas": 1}]))
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w-immutable", {"spec": {"size": "large"}}
        )
    assert "size is immutable once items exist" in json.loads(info.value.body)["message"]


def test_unknown_fields_are_pruned_except_where_preserved(custom: kubernetes.client.CustomObjectsApi) -> None:
    obj = create(custom, widget("w-prune", bogus=1, extra={"anything": {"goes": True}}))
    assert "bogus" not in obj["spec"]
    assert obj["spec"]["extra"] == {"anything": {"goes": True}}


def test_stale_resource_version_is_409(custom: kubernetes.client.CustomObjectsApi) -> None:
    first = create(custom, widget("w-conflict"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w-conflict", {"spec": {"color": "red"}}
    )
    first["spec"]["color"] = "green"
    with pytest.raises(ApiException) as info:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w-conflict", first)
    assert info.value.status == 409
    assert json.loads(info.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as info:
        create(custom, widget("w-conflict"))
    assert info.value.status == 409
    assert json.loads(info.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as info:
        get(custom, "w-missing")
    assert info.value.status == 404
    assert json.loads(info.value.body)["message"] == 'widgets.test.modelfleet.dev "w-missing" not found'


def test_generation_bumps_only_on_spec_changes(custom: kubernetes.client.CustomObjectsApi) -> None:
    obj = create(custom, widget("w-gen"))
    assert obj["metadata"]["generation"] == 1
    rv = int(obj["metadata"]["resourceVersion"])
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w-gen", {"status": {"phase": "A"}}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w-gen", {"metadata": {"labels": {"x": "y"}}}
    )
    after = get(custom, "w-gen")
    assert after["metadata"]["generation"] == 1
    assert int(after["metadata"]["resourceVersion"]) > rv
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w-gen", {"spec": {"color": "red"}}
    )
    assert get(custom, "w-gen")["metadata"]["generation"] == 2


def test_status_is_written_only_through_the_subresource(custom: kubernetes.client.CustomObjectsApi) -> None:
    body = {**widget("w-status"), "status": {"phase": "Sneaky"}}
    assert "status" not in create(custom, body)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w-status", {"status": {"phase": "X"}}
    )
    assert "status" not in get(custom, "w-status")
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "w-status",
        {"spec": {"color": "red"}, "status": {"phase": "Ready"}},
    )
    obj = get(custom, "w-status")
    assert obj["status"] == {"phase": "Ready"}
    assert obj["spec"]["color"] == "blue"


def test_strategic_merge_patch_on_a_custom_resource_is_415(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(widget("w-smp")))
    result = kubectl(
        "patch", "widget", "w-smp", "--type=strategic", "-p", '{"spec": {"color": "red"}}', check=False
    )
    assert result.returncode != 0
    assert (
        "json-patch+json" in result.stderr
        or "UnsupportedMediaType" in result.stderr
        or "strategic" in result.stderr
    )
    kubectl(
        "patch",
        "widget",
        "w-smp",
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/color", "value": "red"}]',
    )
    assert kubectl("get", "widget", "w-smp", "-o", "jsonpath={.spec.color}").stdout == "red"


def test_label_and_field_selectors(kubectl: Kubectl, custom: kubernetes.client.CustomObjectsApi) -> None:
    for name, tier in (("w-sel-a", "web"), ("w-sel-b", "db"), ("w-sel-c", None)):
        body = widget(name)
        if tier:
            body["metadata"]["labels"] = {"tier": tier}
        create(custom, body)

    def names(**kwargs: str) -> set[str]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, **kwargs)["items"]
        return {i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith("w-sel")}

    assert names(label_selector="tier=web") == {"w-sel-a"}
    assert names(label_selector="tier in (web,db)") == {"w-sel-a", "w-sel-b"}
    assert names(label_selector="tier notin (web)") == {"w-sel-b", "w-sel-c"}
    assert names(label_selector="!tier") == {"w-sel-c"}
    assert names(label_selector="tier,tier!=db") == {"w-sel-a"}
    assert names(field_selector="metadata.name=w-sel-b") == {"w-sel-b"}
    assert (
        kubectl("get", "widgets", "-l", "tier=db", "-o", "name").stdout.strip()
        == "widget.test.modelfleet.dev/w-sel-b"
    )


def test_watch_streams_added_modified_deleted(custom: kubernetes.client.CustomObjectsApi) -> None:
    since = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"][
        "resourceVersion"
    ]
    create(custom, widget("w-watch"))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w-watch", {"status": {"phase": "Up"}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w-watch")
    seen: list[tuple[str, str]] = []
    stream = kubernetes.watch.Watch().stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        resource_version=since,
        timeout_seconds=5,
    )
    for event in stream:
        if event["object"]["metadata"]["name"] == "w-watch":
            seen.append((event["type"], event["object"].get("status", {}).get("phase", "")))
        if event["type"] == "DELETED":
            break
    assert seen == [("ADDED", ""), ("MODIFIED", "Up"), ("DELETED", "Up")]


def test_finalizers_hold_deletion(custom: kubernetes.client.CustomObjectsApi) -> None:
    body = widget("w-final")
    body["metadata"]["finalizers"] = ["test/hold"]
    create(custom, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w-final")
    assert get(custom, "w-final")["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w-final", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as info:
        get(custom, "w-final")
    assert info.value.status == 404


def test_deleting_an_owner_deletes_its_dependents(
    api: kubernetes.client.ApiClient, custom: kubernetes.client.CustomObjectsApi
) -> None:
    owner = create(custom, widget("w-owner"))
    ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "name": "w-owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm-owned", "ownerReferences": [ref]}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w-owner")

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("cm-owned", "default")
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, "the owned ConfigMap to be garbage-collected")


def test_kubectl_wait_for_jsonpath_returns_when_status_lands(apiserver: ApiServer, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(widget("w-wait")))
    env = {"KUBECONFIG": str(apiserver.kubeconfig_path), "PATH": "/usr/bin:/bin"}
    waiter = subprocess.Popen(
        [str(KUBECTL), "wait", "widget/w-wait", "--for=jsonpath={.status.phase}=Ready", "--timeout=30s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert apiserver.emulator is not None
        emulator = apiserver.emulator
        wait_for(lambda: emulator.active_watches[PLURAL] > 0, "kubectl wait to open its watch")
        kubectl(
            "patch",
            "widget",
            "w-wait",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"phase": "Ready"}}',
        )
        out, err = waiter.communicate(timeout=DEADLINE)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert "condition met" in out
