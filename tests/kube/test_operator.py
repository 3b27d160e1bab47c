"""The operator end to end on a real API server with the real KubeRay operator: `kubectl apply` a fleet,
watch the RayService, what KubeRay makes of it, and the fleet's status follow.

No kubelet runs in these namespaces, so KubeRay's Ray pods stay Pending and its RayService says
Initializing: the fleet must say Deploying. Status from running Ray clusters, written by KubeRay itself, is
the end-to-end tests' part (tests/e2e); every status KubeRay can write is mapped in tests/unit/test_status.py.

The tests share the module's namespace and operator, never a fleet: each one makes its own under a name of its
own (`unique`), so any of them runs alone or in any order.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

import pytest
import yaml

from modelfleet.reconcile import FIELD_MANAGER
from tests.kube.conftest import REPO, Kube, Operator, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("operator")]
RS = "rayservices.v1.ray.io"  # explicit version: KubeRay also serves the deprecated v1alpha1

EXAMPLE_PATH = REPO / "examples" / "cluster" / "two-models-one-gpu.yaml"
EXAMPLE = yaml.safe_load(EXAMPLE_PATH.read_text())


def unique(prefix: str) -> str:
    """A fleet name no other test uses (they share the module's namespace)."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def fleet(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name}
    return doc


def apply(kube: Kube, doc: dict[str, Any], check: bool = True) -> Any:
    return kube.run("apply", "-f", "-", stdin=yaml.safe_dump(doc), check=check)


def rayservice(kube: Kube, name: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(lambda: kube.get(RS, name), what=f"RayService {name}")
    return found


def wait_jsonpath(kube: Kube, name: str, path: str, value: str, timeout: int = 30) -> None:
    kube.run(
        "wait",
        f"modelfleet/{name}",
        f"--for=jsonpath={path}={value}",
        f"--timeout={timeout}s",
        timeout=timeout + 10,
    )


def deploying(kube: Kube, name: str) -> None:
    """Apply the example as fleet `name` and wait until the operator has settled it: its RayService made and
    its status written (observedGeneration, Deploying: what no Ray pod can get past here)."""
    apply(kube, fleet(name))
    rayservice(kube, name)
    wait_jsonpath(kube, name, "{.status.phase}", "Deploying")


def serve_args(rs: dict[str, Any], app: str) -> dict[str, Any]:
    """The serving args of one application in the RayService's serveConfigV2."""
    apps = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"]
    found: dict[str, Any] = next(a["args"] for a in apps if a["name"] == app)
    return found


def events_for(kube: Kube, name: str) -> list[dict[str, Any]]:
    out = kube.run("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def test_apply_creates_an_owned_rayservice_that_kuberay_takes_up(kube: Kube) -> None:
    name = unique("chat")
    apply(kube, fleet(name))
    rs = rayservice(kube, name)
    mf = kube.get("modelfleet", name)
    assert mf is not None
    owner = rs["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ModelFleet",
        name,
        mf["metadata"]["uid"],
        True,
    )
    assert rs["metadata"]["labels"]["modelfleet.dev/fleet"] == name
    shown = json.loads(kube.run("get", RS, name, "-o", "json", "--show-managed-fields").stdout)
    managers = {(entry["manager"], entry["operation"]) for entry in shown["metadata"]["managedFields"]}
    assert (FIELD_MANAGER, "Apply") in managers, "the RayService is server-side applied by the operator"
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert [app["name"] for app in serve["applications"]] == ["falcon3-1b", "qwen-0-5b", "fleet"]
    assert rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] == 0
    # KubeRay's own status: no pod can run here, so it is initializing, and the fleet says Deploying.
    reason = wait_for(
        lambda: next(
            (
                c["reason"]
                for c in (kube.get(RS, name) or {}).get("status", {}).get("conditions", [])
                if c["type"] == "Ready"
            ),
            None,
        ),
        what="KubeRay's Ready condition on the RayService",
    )
    assert reason == "Initializing"
    wait_jsonpath(kube, name, "{.status.phase}", "Deploying")
    wait_jsonpath(kube, name, '{.status.conditions[?(@.type=="RayServiceReady")].status}', "False")


def test_kubectl_shows_the_fleet(kube: Kube) -> None:
    name = unique("shown")
    deploying(kube, name)
    wait_jsonpath(kube, name, "{.status.ready}", "0/2")
    table = kube.run("get", "modelfleets").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "PHASE", "ENDPOINT", "AGE"]
    # Other tests' fleets share the namespace: this fleet's row.
    row = next(line.split() for line in table[1:] if line.split()[0] == name)
    assert row[:4] == [name, "0/2", "Deploying", f"http://{name}-serve-svc.{kube.namespace}.svc:8000/v1"]
    wide = kube.run("get", "mf", name, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME",
        "READY",
        "PHASE",
        "ENDPOINT",
        "AGE",
        "RAYSERVICE",
        "WORKERS",
        "MESSAGE",
    ]
    assert wide[1].split()[5] == name
    explained = kube.run("explain", "modelfleet.spec.models").stdout
    assert "FIELDS:" in explained and "replicas" in explained and "engineArgs" in explained
    explained = kube.run("explain", "modelfleet.spec.models.replicas.min").stdout
    assert "integer" in explained and "0" in explained


def test_schema_and_cel_violations_are_refused_by_kubectl(kube: Kube) -> None:
    name = unique("refused")
    bad = fleet(name)
    bad["spec"]["models"][0]["replicas"] = {"min": 3, "max": 1}
    result = apply(kube, bad, check=False)
    assert result.returncode != 0
    assert (
        "spec.models[0].replicas.min" in result.stderr
        and "min must be less than or equal to max" in result.stderr
    ), result.stderr
    # No stored defaults inside list items (GitOps), yet an absent max still counts as its default 1.
    bad = fleet(name)
    bad["spec"]["models"][0]["replicas"] = {"min": 3}
    result = apply(kube, bad, check=False)
    assert result.returncode != 0 and "min must be less than or equal to max" in result.stderr, result.stderr
    bad = fleet(name)
    bad["spec"]["models"][1]["name"] = "v1"
    result = apply(kube, bad, check=False)
    assert result.returncode != 0 and "spec.models[1].name" in result.stderr, result.stderr
    bad = fleet(name)
    bad["spec"]["models"][0]["task"] = "dance"
    result = apply(kube, bad, check=False)
    assert result.returncode != 0, result.stderr
    assert 'spec.models[0].task: Unsupported value: "dance"' in result.stderr, result.stderr
    # Strict field validation (kubectl's default): an unknown field is refused, not silently pruned.
    bad = fleet(name)
    bad["spec"]["models"][0]["gpuz"] = 1
    result = apply(kube, bad, check=False)
    assert result.returncode != 0 and 'unknown field "spec.models[0].gpuz"' in result.stderr, result.stderr
    assert kube.get("modelfleet", name) is None


def test_semantic_invalid_update_leaves_the_rayservice_untouched(kube: Kube) -> None:
    name = unique("invalid")
    deploying(kube, name)
    before = rayservice(kube, name)["spec"]
    bad = fleet(name)
    bad["spec"]["models"][0]["engineArgs"]["gpu_memory_utilization"] = 0.9
    apply(kube, bad)
    wait_jsonpath(kube, name, "{.status.phase}", "Invalid")
    mf = kube.get("modelfleet", name)
    assert mf is not None
    spec_valid = next(c for c in mf["status"]["conditions"] if c["type"] == "SpecValid")
    assert spec_valid["status"] == "False"
    assert spec_valid["message"].startswith("spec.models[0].engineArgs.gpu_memory_utilization: 0.9:")
    assert json.dumps(rayservice(kube, name)["spec"], sort_keys=True) == json.dumps(before, sort_keys=True)
    assert any(e["reason"] == "Invalid" and e["type"] == "Warning" for e in events_for(kube, name))
    apply(kube, fleet(name))
    wait_jsonpath(kube, name, '{.status.conditions[?(@.type=="SpecValid")].status}', "True")


def test_editing_one_model_changes_only_serve_config(kube: Kube) -> None:
    name = unique("edited")
    apply(kube, fleet(name))
    # KubeRay has taken the RayService up: it names the Ray cluster it brings up.
    before = wait_for(
        lambda: (
            ((s := rayservice(kube, name)).get("status") or {})
            .get("pendingServiceStatus", {})
            .get("rayClusterName")
            and s
        ),
        what="KubeRay to name the RayService's pending Ray cluster",
    )
    edited = fleet(name)
    edited["spec"]["models"][0]["engineArgs"]["max_model_len"] = 4096
    apply(kube, edited)
    after = wait_for(
        lambda: (
            (s := rayservice(kube, name))["spec"]["serveConfigV2"] != before["spec"]["serveConfigV2"] and s
        ),
        what="serveConfigV2 to change",
    )
    assert after["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]
    assert "max_model_len: 4096" in after["spec"]["serveConfigV2"]
    # KubeRay applies a serve-config change in place: still the same Ray cluster.
    cluster = (after.get("status") or {}).get("pendingServiceStatus", {}).get("rayClusterName")
    assert cluster and cluster == (before.get("status") or {}).get("pendingServiceStatus", {}).get(
        "rayClusterName"
    )


def test_a_hand_edit_of_a_rendered_field_is_reverted_and_reported(kube: Kube) -> None:
    name = unique("drifted")
    deploying(kube, name)  # observed: a change of the RayService now is drift
    wanted = rayservice(kube, name)["spec"]
    edit = [
        {"op": "replace", "path": "/spec/rayClusterConfig/workerGroupSpecs/0/maxReplicas", "value": 9},
        {"op": "replace", "path": "/spec/serveConfigV2", "value": "applications: []\n"},
    ]
    kube.run("patch", RS, name, "--type=json", "-p", json.dumps(edit))

    def reverted() -> dict[str, Any] | None:
        spec = rayservice(kube, name)["spec"]
        return spec if spec["serveConfigV2"] == wanted["serveConfigV2"] else None

    spec = wait_for(reverted, what="the hand edit to be reverted")
    assert spec["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 2
    wait_for(
        lambda: any(e["reason"] == "DriftCorrected" for e in events_for(kube, name)),
        what="a DriftCorrected Event on the fleet",
    )


def test_a_list_entry_another_field_manager_added_is_not_drift(kube: Kube) -> None:
    """A policy engine injects an env var into the head container (its own field manager): the operator's
    entries are all there, so it neither sets anything back nor reports drift on every pass (issue: a
    DriftCorrected Event each 10 s, for ever). Watched for 60 s, six of the operator's passes."""
    name = unique("injected")
    deploying(kube, name)
    injected = {"name": "POLICY_INJECTED", "value": "yes"}
    path = "/spec/rayClusterConfig/headGroupSpec/template/spec/containers/0/env/-"
    edit = [{"op": "add", "path": path, "value": injected}]
    kube.run("patch", RS, name, "--type=json", "--field-manager=policy-engine", "-p", json.dumps(edit))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        corrected = [e for e in events_for(kube, name) if e["reason"] == "DriftCorrected"]
        assert sum(e.get("count") or 1 for e in corrected) <= 1, corrected
        time.sleep(2)
    head = rayservice(kube, name)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert injected in head["containers"][0]["env"], "the other manager's entry stays"


def test_an_object_of_the_fleets_name_made_by_someone_else_is_left_alone_and_survives_the_fleet(
    kube: Kube,
) -> None:
    """Another team's ConfigMap happens to be called `<fleet>-haproxy`: the fleet is Failed naming it, the
    ConfigMap is not changed (no owner reference added), and deleting the fleet does not delete it."""
    name = unique("taken")
    theirs = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-haproxy", "labels": {"team": "b"}},
        "data": {"routes": "theirs"},
    }
    kube.run("apply", "-f", "-", stdin=yaml.safe_dump(theirs))
    before = kube.get("configmap", f"{name}-haproxy")
    assert before is not None
    apply(kube, fleet(name))
    wait_jsonpath(kube, name, "{.status.phase}", "Failed")
    message = (kube.get("modelfleet", name) or {})["status"]["message"]
    assert message.startswith(f"ConfigMap {kube.namespace}/{name}-haproxy exists and is not this fleet's"), (
        message
    )
    assert any(e["reason"] == "NameTaken" for e in events_for(kube, name))
    after = kube.get("configmap", f"{name}-haproxy") or {}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert kube.get(RS, name) is None  # nothing of the fleet made beside it
    kube.run("delete", "modelfleet", name, "--wait=true")
    wait_for(lambda: kube.get("modelfleet", name) is None or None, what="the fleet gone")
    assert (kube.get("configmap", f"{name}-haproxy") or {}).get("data") == {"routes": "theirs"}


def test_fields_the_operator_does_not_render_are_left_alone(kube: Kube) -> None:
    """What Argo CD, a policy engine or a person adds beside our fields survives every reconcile."""
    name = unique("labelled")
    apply(kube, fleet(name))
    rayservice(kube, name)
    kube.run("label", RS, name, "argocd.argoproj.io/instance=llm")
    kube.run("annotate", RS, name, "example.com/owner=team-a")
    # A change of the fleet makes the operator apply again; the additions must still be there after.
    edited = fleet(name)
    edited["spec"]["models"][0]["replicas"] = {"min": 1, "max": 3}
    apply(kube, edited)
    applied = wait_for(
        lambda: (s := rayservice(kube, name)) and serve_args(s, "qwen-0-5b")["replicas"]["max"] == 3 and s,
        what="the operator to apply the edited fleet",
    )
    assert applied["metadata"]["labels"]["argocd.argoproj.io/instance"] == "llm"
    assert applied["metadata"]["annotations"]["example.com/owner"] == "team-a"


def test_reapplying_the_same_file_changes_nothing(kube: Kube, tmp_path: Any) -> None:
    """GitOps stays quiet: once the operator has settled, applying the same file again is a no-op and
    `kubectl diff` shows nothing, for both apply modes."""
    name = unique("gitops")
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet(name)))
    kube.run("apply", "-f", str(path))
    rayservice(kube, name)
    wait_jsonpath(kube, name, "{.status.phase}", "Deploying")
    generation = (kube.get("modelfleet", name) or {})["metadata"]["generation"]
    again = kube.run("apply", "-f", str(path))
    assert again.stdout.strip().endswith("unchanged"), again.stdout
    diff = kube.run("diff", "-f", str(path), check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    server_side = kube.run("apply", "--server-side", "-f", str(path))
    assert "serverside-applied" in server_side.stdout
    diff = kube.run("diff", "--server-side", "-f", str(path), check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    assert (kube.get("modelfleet", name) or {})["metadata"]["generation"] == generation


def test_deleting_the_fleet_cascades_through_the_garbage_collector(kube: Kube) -> None:
    name = unique("short-lived")
    apply(kube, fleet(name))
    rs = rayservice(kube, name)
    cluster = wait_for(
        lambda: next(
            (
                c
                for c in kube.items("rayclusters.v1.ray.io")
                if any(o["uid"] == rs["metadata"]["uid"] for o in c["metadata"].get("ownerReferences", []))
            ),
            None,
        ),
        what=f"KubeRay to create the RayCluster of {name}",
    )
    kube.run("delete", "modelfleet", name, "--wait=false")
    wait_for(lambda: kube.get(RS, name) is None, what="garbage collection of the RayService")
    wait_for(
        lambda: kube.get("rayclusters.v1.ray.io", cluster["metadata"]["name"]) is None,
        what="garbage collection of the RayCluster",
    )
    wait_for(
        lambda: (
            not [
                p
                for p in kube.items("pods")
                if p["metadata"]["labels"].get("ray.io/cluster") == cluster["metadata"]["name"]
            ]
        ),
        what="garbage collection of the Ray pods",
    )


NP = "networkpolicies.networking.k8s.io"


def test_the_network_policy_is_owned_corrected_turned_off_and_collected(kube: Kube) -> None:
    name = unique("walled")
    apply(kube, fleet(name))
    owner = wait_for(lambda: kube.get("modelfleet", name), what="the fleet")
    policy = wait_for(lambda: kube.get(NP, f"{name}-ray"), what="the fleet's NetworkPolicy")
    # The API server accepted it as rendered (validation), owned by the fleet.
    assert [(o["kind"], o["uid"], o.get("controller")) for o in policy["metadata"]["ownerReferences"]] == [
        ("ModelFleet", owner["metadata"]["uid"], True)
    ]
    ports = [[p["port"] for p in rule.get("ports", [])] for rule in policy["spec"]["ingress"]]
    assert ports == [[], [8000], [8265], [8080]]
    # A hand edit that opens Ray's ports to everyone is set back.
    opened = [{"op": "replace", "path": "/spec/ingress/0/from", "value": [{"namespaceSelector": {}}]}]
    kube.run("patch", NP, f"{name}-ray", "--type=json", "-p", json.dumps(opened))
    wait_for(
        lambda: (
            kube.get(NP, f"{name}-ray")["spec"]["ingress"][0]["from"]
            == [{"podSelector": {"matchLabels": {"modelfleet.dev/fleet": name}}}]
        ),
        what="the operator to set the policy back",
    )
    # Widening who may call the Serve port is an in-place update.
    widened = fleet(name)
    widened["spec"]["networkPolicy"] = {
        "allowFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "web"}}}]
    }
    apply(kube, widened)
    wait_for(
        lambda: (
            kube.get(NP, f"{name}-ray")["spec"]["ingress"][1]["from"]
            == widened["spec"]["networkPolicy"]["allowFrom"]
        ),
        what="the widened policy",
    )
    widened["spec"]["networkPolicy"] = {"enabled": False}
    turned_off_back_on_and_collected(kube, widened, NP, f"{name}-ray")


def turned_off_back_on_and_collected(kube: Kube, off: dict[str, Any], kind: str, owned: str) -> None:
    """Applied with `off`, the fleet loses the owned object (the operator deletes it); applied as the example
    it gets it back; deleted, it takes it along (garbage collector, through the owner reference)."""
    name = off["metadata"]["name"]
    apply(kube, off)
    wait_for(lambda: kube.get(kind, owned) is None, what=f"the operator to delete {kind} {owned}")
    apply(kube, fleet(name))
    wait_for(lambda: kube.get(kind, owned), what=f"{kind} {owned} to come back")
    kube.run("delete", "modelfleet", name, "--wait=false")
    wait_for(lambda: kube.get(kind, owned) is None, what=f"garbage collection of {kind} {owned}")


CM = "configmaps"


def test_the_haproxy_config_map_routes_the_models_is_corrected_turned_off_and_collected(kube: Kube) -> None:
    """A high-throughput fleet's Ray pods run HAProxy from the fleet's ConfigMap (render/routes.py)."""
    name = unique("routed")
    apply(kube, fleet(name))  # high-throughput mode is the default
    owner = wait_for(lambda: kube.get("modelfleet", name), what="the fleet")
    config_map = wait_for(lambda: kube.get(CM, f"{name}-haproxy"), what="the fleet's HAProxy ConfigMap")
    assert [
        (o["kind"], o["uid"], o.get("controller")) for o in config_map["metadata"]["ownerReferences"]
    ] == [("ModelFleet", owner["metadata"]["uid"], True)]
    models = fleet(name)["spec"]["models"]
    routes = json.loads(config_map["data"]["unified-routes.json"])
    assert set(routes["models"]) == {m["name"] for m in models}
    # The Ray pods mount it and run Ray's HAProxy through its wrapper.
    pod = rayservice(kube, name)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert {"name": f"{name}-haproxy", "defaultMode": 0o555} in [v.get("configMap") for v in pod["volumes"]]
    # A hand edit that would send a model's requests elsewhere is set back; a deleted ConfigMap comes back.
    rerouted = [{"op": "replace", "path": "/data/unified-routes.json", "value": '{"models": {}}'}]
    kube.run("patch", CM, f"{name}-haproxy", "--type=json", "-p", json.dumps(rerouted))
    wait_for(
        lambda: kube.get(CM, f"{name}-haproxy")["data"] == config_map["data"],
        what="the operator to set the routes back",
    )
    kube.run("delete", CM, f"{name}-haproxy")
    wait_for(lambda: kube.get(CM, f"{name}-haproxy"), what="the ConfigMap to come back")
    # A model added is routed by the same ConfigMap, without a change to the pod template (no new cluster).
    template = rayservice(kube, name)["spec"]["rayClusterConfig"]
    grown = fleet(name)
    grown["spec"]["models"].append({**copy.deepcopy(models[0]), "name": "added"})
    apply(kube, grown)
    wait_for(
        lambda: (
            "added" in json.loads(kube.get(CM, f"{name}-haproxy")["data"]["unified-routes.json"])["models"]
        ),
        what="the new model in the routes",
    )
    assert rayservice(kube, name)["spec"]["rayClusterConfig"] == template
    # Off the high-throughput path (the standard one has no HAProxy), on again, then the fleet deleted.
    standard = fleet(name)
    standard["spec"]["highThroughput"] = False
    turned_off_back_on_and_collected(kube, standard, CM, f"{name}-haproxy")


def test_operator_killed_mid_way_converges_without_duplicates(kube: Kube, operator: Operator) -> None:
    prefix = f"{unique('bulk')}-"
    names = [f"{prefix}{i:02d}" for i in range(50)]
    kube.run("apply", "-f", "-", stdin=yaml.safe_dump_all([fleet(n) for n in names]))
    wait_for(
        lambda: len([r for r in kube.items(RS) if r["metadata"]["name"].startswith(prefix)]) >= 5,
        what="the operator to start on the bulk fleets",
    )
    operator.kill()
    operator.start()

    behind: list[str] = []

    def converged() -> bool:
        services = {r["metadata"]["name"] for r in kube.items(RS) if r["metadata"]["name"].startswith(prefix)}
        fleets = [f for f in kube.items("modelfleets") if f["metadata"]["name"].startswith(prefix)]
        phases = {f["metadata"]["name"]: (f.get("status") or {}).get("phase") for f in fleets}
        behind[:] = [
            f"{n}: RayService {'present' if n in services else 'missing'}, phase {phases.get(n)}"
            for n in names
            if n not in services or phases.get(n) != "Deploying"
        ]
        return sorted(services) == names and not behind

    try:
        wait_for(converged, timeout=300, what="50 fleets to converge after the restart")
    except AssertionError as error:
        raise AssertionError(f"{error}; not converged: {behind[:10]}") from None
    created = [
        e for e in kube.items("events") if e["reason"] == "Created" and e["involvedObject"]["name"] in names
    ]
    per_fleet = {
        n: sum(e.get("count", 1) for e in created if e["involvedObject"]["name"] == n) for n in names
    }
    assert all(count <= 1 for count in per_fleet.values()), f"RayServices created more than once: {per_fleet}"
    kube.run("delete", "modelfleets", *names, "--wait=false")


def test_the_status_written_when_the_rayservice_is_created_names_it(kube: Kube) -> None:
    """The first reconcile creates the RayService (a server-side apply answered 201, for which the
    Kubernetes client returns no body) and writes the status from it: Deploying, naming the RayService,
    never Pending. Run here by a Reconciler of our own on a fleet no operator watches, so nothing else
    writes the status in between."""
    from kubernetes import client, config

    from modelfleet.reconcile import Reconciler

    namespace = f"{kube.namespace}-solo"
    admin = Kube(kube.kubeconfig, namespace)
    admin.run("create", "namespace", namespace)
    try:
        apply(admin, fleet("solo"))
        body = admin.get("modelfleet", "solo")
        assert body is not None
        api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kube.kubeconfig)))  # type: ignore[no-untyped-call]
        outcome = Reconciler(api).reconcile(body, lambda *_: None)
        assert (outcome.action, outcome.phase) == ("created", "Deploying")
        status = (admin.get("modelfleet", "solo") or {}).get("status") or {}
        assert (status.get("phase"), status.get("rayService")) == ("Deploying", "solo"), status
    finally:
        admin.run("delete", "namespace", namespace, "--wait=false", check=False)
