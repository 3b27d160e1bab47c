"""`kubectl apply` a ModelFleet -> the real KubeRay -> Ray pods as local processes -> OpenAI requests served,
with the fleet's status true at every step. Every status transition seen here was written by KubeRay
itself; the tests only drive kubectl and the openai SDK (and kill one Ray process, as a crash would).

The tests run in file order on one fleet; each leaves it serving. Figures (seconds) are printed with `-s`
and kept in `FIGURES` for the closing summary line.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from modelfleet import localray
from modelfleet_contract.wire import ROUTER_APP_NAME
from tests.cluster.chart import NAMESPACE as OPERATOR_NAMESPACE
from tests.cluster.podrunner import POD_MARKER, pod_processes
from tests.e2e.conftest import (
    ADAPTER,
    ALWAYS_ON,
    CANARY,
    READY_TIMEOUT_S,
    SLEEPY,
)
from tests.e2e.truth import TruthSampler
from tests.kube.conftest import Kube, wait_for
from tests.support.cluster_fleet import WORKER_GROUP, Fleet, WakeTimeline, first_token_s
from tests.support.prometheus import Samples, scrape, total

pytestmark = [pytest.mark.e2e]
FIGURES: dict[str, float] = {}
# After a crash the fleet may say Ready until KubeRay notices (its 2 s resync) and the operator follows.
DETECTION_S = 10.0
SMALLER_CONTEXT = 192


# Ray's metrics agents export what processes recorded every 10 s (metrics_report_interval_ms).
REPORT_INTERVAL_S = 10


def figure(name: str, seconds: float) -> None:
    FIGURES[name] = round(seconds, 1)
    print(f"[e2e] {name}: {seconds:.1f} s", flush=True)


def serve_apps(fleet: Fleet) -> dict[str, Any]:
    status = fleet.rayservice().get("status") or {}
    apps: dict[str, Any] = (status.get("activeServiceStatus") or {}).get("applicationStatuses") or {}
    return apps


class Load:
    """Requests to one model, back to back on a thread, counting failures (what a client would see)."""

    def __init__(self, fleet: Fleet, model: str) -> None:
        self.fleet, self.model = fleet, model
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = self.fleet.client(timeout_s=60)
                done = client.completions.create(model=self.model, prompt="Hi", max_tokens=2, temperature=0)
                self.ok += bool(done.choices)
                client.close()
            except Exception as error:  # every failure is the test's business
                self.failed.append(f"{type(error).__name__}: {error}"[:200])
            self._stop.wait(0.2)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)


def test_apply_to_ready_and_serving(fleet: Fleet) -> None:
    started = time.monotonic()
    with TruthSampler(fleet, [ALWAYS_ON], every_s=2.0) as rollout:
        fleet.apply()
        fleet.wait_phase("Ready", READY_TIMEOUT_S)
        figure("apply -> Ready", time.monotonic() - started)
        # The last samples show it serving: keep sampling a moment past Ready.
        wait_for(
            lambda: any(s.ready_throughout for s in rollout.samples[-3:]), timeout=60, what="Ready samples"
        )
    assert not rollout.ready_while_failing(), f"Ready before requests succeeded: {rollout.describe()}"
    row = fleet.kube.run("get", "mf", fleet.name, "--no-headers").stdout.split()
    assert row[:3] == [fleet.name, "2/2", "Ready"], row
    # From zero workers: KubeRay's autoscaler asked for the one worker alpha needs, KubeRay made its pod.
    cluster = fleet.kube.get("rayclusters.v1.ray.io", fleet.active_cluster())
    assert cluster is not None
    group = cluster["spec"]["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["replicas"]) == (0, 1), group
    wait_for(
        lambda: fleet.get()["status"].get("workers") == [{"group": WORKER_GROUP, "ready": 1, "desired": 1}],
        timeout=30,
        what="status.workers to show the autoscaled worker",
    )
    wide = fleet.kube.run("get", "mf", fleet.name, "-o", "wide", "--no-headers").stdout.split()
    assert "1/1" in wide, wide
    events = fleet.kube.run("get", "events", "--field-selector", f"involvedObject.name={fleet.name}").stdout
    assert "FleetReady" in events, events
    assert any(s.all_answered for s in rollout.samples), rollout.describe()
    # KubeRay's own status: every application RUNNING on the active cluster, serve endpoints counted.
    assert {name: app["status"] for name, app in serve_apps(fleet).items()} == {
        ALWAYS_ON: "RUNNING",
        SLEEPY: "RUNNING",
        "fleet": "RUNNING",
    }
    assert (fleet.rayservice()["status"].get("numServeEndpoints") or 0) >= 1
    # The RayService's head Service (the dashboard's stable name) selects the head pod.
    head_svc = fleet.kube.run(
        "get", "endpointslices", "-l", f"kubernetes.io/service-name={fleet.name}-head-svc", "-o", "json"
    ).stdout
    assert [e for item in json.loads(head_svc)["items"] for e in item.get("endpoints") or []], head_svc

    unified, prefixed = fleet.client(), fleet.client(f"/{ALWAYS_ON}")
    chat = unified.chat.completions.create(
        model=ALWAYS_ON, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
    )
    assert chat.choices[0].message.content is not None and chat.model == ALWAYS_ON
    chunks = list(
        prefixed.chat.completions.create(
            model=ALWAYS_ON, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True
        )
    )
    assert len(chunks) >= 2 and any(c.choices and c.choices[0].delta.content for c in chunks)
    completion = prefixed.completions.create(model=ALWAYS_ON, prompt="Once upon", max_tokens=8, temperature=0)
    assert completion.choices[0].text
    assert {m.id for m in unified.models.list().data} >= {ALWAYS_ON, SLEEPY, ADAPTER, CANARY}
    # The adapter by name on both endpoints, and the alias answered by one of its targets.
    for client in (unified, prefixed):
        tuned = client.chat.completions.create(
            model=ADAPTER, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
        )
        assert tuned.model == ADAPTER and tuned.choices[0].message.content != chat.choices[0].message.content
    assert prefixed.models.retrieve(ADAPTER).model_dump()["parent"] == ALWAYS_ON
    split = {
        unified.chat.completions.create(
            model=CANARY, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
        ).model
        for _ in range(12)
    }
    assert split == {ALWAYS_ON, ADAPTER}, split  # 1:1, both seen in 12 (p of not: 1/2048)
    [alias] = fleet.get()["status"]["aliases"]
    assert [(t["model"], t["state"]) for t in alias["targets"]] == [(ALWAYS_ON, "Ready"), (ADAPTER, "Ready")]


def test_the_fleet_endpoint_reaches_the_models_application_through_haproxy(fleet: Fleet) -> None:
    """In high-throughput mode every Ray pod runs HAProxy through the wrapper in the fleet's ConfigMap
    (render/routes.py): a chat on the fleet's endpoint goes to the model's application itself. On the
    standard path the fleet's router takes it. Serve's own per-application HTTP counter of POSTs, summed over
    the Ray pods' metrics ports, says which (GETs are left out: probes call the pods all the time)."""
    pods = fleet.kube.run(
        "get",
        "pods",
        "-l",
        f"ray.io/cluster={fleet.active_cluster()}",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ).stdout.split()
    assert pods, "no Ray pod of the active cluster"

    def by_application() -> dict[str, float]:
        samples: Samples = {}
        for ip in pods:
            scrape(f"http://{ip}:8080/metrics", into=samples)
        name = "ray_serve_num_http_requests_total"
        return {
            app: total(samples, name, application=app, method="POST") for app in (ALWAYS_ON, ROUTER_APP_NAME)
        }

    # Ray's metrics agents export every 10 s: the earlier tests' requests must all be in before counting.
    last: list[dict[str, float]] = [by_application()]
    since = [time.monotonic()]

    def settled() -> dict[str, float] | None:
        now = by_application()
        if now != last[0]:
            last[0], since[0] = now, time.monotonic()
        return now if time.monotonic() - since[0] > REPORT_INTERVAL_S + 2 else None

    before = localray.wait_for("the counters to settle", settled, timeout_s=120, every_s=2)
    client, chats = fleet.client(), 3
    for _ in range(chats):
        client.chat.completions.create(
            model=ALWAYS_ON, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    assert ALWAYS_ON in {m.id for m in client.models.list().data}  # a GET: the router's, not counted here
    taken_by = ALWAYS_ON if fleet.high_throughput() else ROUTER_APP_NAME
    want = {app: float(chats) if app == taken_by else 0.0 for app in (ALWAYS_ON, ROUTER_APP_NAME)}
    got: dict[str, float] = {}

    def counted() -> bool:
        got.update({app: count - before[app] for app, count in by_application().items()})
        return got == want

    try:
        localray.wait_for(
            "Serve's HTTP counters to move", counted, timeout_s=REPORT_INTERVAL_S * 6, every_s=2
        )
    except TimeoutError:
        pytest.fail(f"requests by application: got {got}, want {want}")


def test_editing_one_model_applies_in_place_and_the_other_keeps_answering(fleet: Fleet) -> None:
    """beta (asleep) gets a smaller context and the alias new weights; KubeRay PUTs the new serveConfigV2 to
    the same cluster while alpha takes requests back to back. The next test wakes beta and meets the new
    limit."""
    wait_for(
        lambda: fleet.model_states().get(SLEEPY) == "ScaledToZero",
        timeout=120,
        what=f"{SLEEPY} to show ScaledToZero (the operator reads Serve's replicas from the dashboard)",
    )
    cluster, pods = fleet.active_cluster(), {p["metadata"]["uid"] for p in fleet.pods()}
    edited = json.loads(json.dumps(fleet.document))
    edited["spec"]["models"][1]["engineArgs"]["max_model_len"] = SMALLER_CONTEXT
    edited["spec"]["aliases"][0]["targets"][1]["weight"] = 1000  # the adapter takes ~all of the alias
    started = time.monotonic()
    with Load(fleet, ALWAYS_ON) as load:
        fleet.apply(edited)
        wait_for(
            lambda: f"max_model_len: {SMALLER_CONTEXT}" in fleet.rayservice()["spec"]["serveConfigV2"],
            what="the new serveConfigV2",
        )
        wait_for(
            lambda: (
                (f := fleet.get())["status"].get("observedGeneration") == f["metadata"]["generation"]
                and f["status"].get("phase") == "Ready"
            ),
            timeout=300,
            what="the fleet Ready on the edited generation",
        )
        figure("in-place model update -> Ready", time.monotonic() - started)
        wait_for(lambda: load.ok >= 3, timeout=60, what="requests to the other model during the update")
    assert load.failed == [], f"{ALWAYS_ON} failed during the other model's update: {load.failed[:3]}"
    figure("requests failed on the other model during the update", len(load.failed))
    assert fleet.active_cluster() == cluster, "a serve-config change must not make a new Ray cluster"
    assert {p["metadata"]["uid"] for p in fleet.pods()} == pods, "no pod was replaced"
    canary = fleet.client().chat.completions.create(
        model=CANARY, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, user="someone"
    )
    assert canary.model == ADAPTER  # 1000:1 (p of alpha: 1/1001)
    fleet.document = edited


def test_the_sleeping_model_is_listed_scaled_to_zero_and_wakes(fleet: Fleet) -> None:
    wait_for(
        lambda: fleet.model_states().get(SLEEPY) == "ScaledToZero",
        timeout=120,
        what=f"{SLEEPY} to show ScaledToZero (the operator reads Serve's replicas from the dashboard)",
    )
    assert fleet.phase() == "Ready", "a model asleep and ready to wake leaves the fleet Ready"
    client = fleet.client()
    assert SLEEPY in {m.id for m in client.models.list().data}
    figure("wake from zero through the serve Service: request -> first token", first_token_s(client, SLEEPY))
    wait_for(lambda: fleet.model_states().get(SLEEPY) == "Ready", timeout=60, what=f"{SLEEPY} Ready, awake")
    # The engine that woke runs the edited arguments: a request past the new context is refused.
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=SLEEPY, prompt="Hi", max_tokens=SMALLER_CONTEXT + 8)
    assert str(SMALLER_CONTEXT) in str(refused.value), refused.value


def test_an_invalid_edit_is_refused_and_the_fleet_keeps_serving(fleet: Fleet) -> None:
    bad = json.loads(json.dumps(fleet.document))
    bad["spec"]["models"][0]["engineArgs"]["tensor_parallel_size"] = 0
    before = fleet.rayservice()["spec"]
    try:
        with Load(fleet, ALWAYS_ON) as load:
            fleet.apply(bad)
            wait_for(lambda: fleet.phase() == "Invalid", what="phase Invalid")
            message = fleet.get()["status"]["message"]
            wait_for(lambda: load.ok >= 3, timeout=60, what="requests while the fleet is Invalid")
        assert message.startswith("spec.models[0].engineArgs.tensor_parallel_size: 0:"), message
        assert load.failed == [], load.failed[:3]
        assert fleet.rayservice()["spec"] == before, "an invalid fleet must leave the RayService alone"
    finally:  # the valid fleet back, whatever failed, so the next tests start from a serving fleet
        fleet.apply()
    fleet.wait_phase("Ready", 120)


def _ray_head_gcs(fleet: Fleet) -> int:
    head = next(p for p in fleet.pods() if p["metadata"]["labels"].get("ray.io/node-type") == "head")
    marker = f"{POD_MARKER}={fleet.kube.namespace}/{head['metadata']['name']}/{head['metadata']['uid']}"
    for pid in pod_processes(fleet.kube.namespace):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ and b"gcs_server" in command:
            return pid
    raise AssertionError("no gcs_server process in the head pod")


def test_a_killed_head_leaves_ready_and_comes_back(fleet: Fleet) -> None:
    head_uid = next(
        p["metadata"]["uid"]
        for p in fleet.pods()
        if p["metadata"]["labels"].get("ray.io/node-type") == "head"
    )
    with TruthSampler(fleet, [ALWAYS_ON], every_s=2.0) as sampler:
        wait_for(lambda: sampler.samples, what="a first sample")
        killed = time.monotonic()
        os.kill(_ray_head_gcs(fleet), signal.SIGKILL)  # the head's GCS dies: `ray start --block` ends
        left = wait_for(
            lambda: fleet.phase() != "Ready" and time.monotonic(), timeout=60, what="leaving Ready"
        )
        figure("head killed -> fleet leaves Ready", left - killed)
        wait_for(
            lambda: any(
                p["metadata"]["uid"] != head_uid
                for p in fleet.pods()
                if p["metadata"]["labels"].get("ray.io/node-type") == "head"
            ),
            timeout=60,
            what="KubeRay to create a new head pod",
        )
        fleet.wait_phase("Ready", 420)
        figure("head killed -> Ready again", time.monotonic() - killed)
        wait_for(lambda: sampler.samples[-1].all_answered, timeout=60, what="answers after recovery")
    assert sampler.longest_false_ready_s() <= DETECTION_S, sampler.describe()


def test_changing_the_head_rolls_a_new_cluster(fleet: Fleet) -> None:
    old = fleet.active_cluster()
    bigger = json.loads(json.dumps(fleet.document))
    bigger["spec"]["head"]["cpus"] = 2
    started = time.monotonic()
    with TruthSampler(fleet, [ALWAYS_ON], every_s=2.0) as sampler:
        fleet.apply(bigger)
        wait_for(lambda: fleet.phase() == "Upgrading", timeout=60, what="phase Upgrading")
        wait_for(lambda: fleet.active_cluster() not in ("", old), timeout=900, what="the new cluster active")
        fleet.wait_phase("Ready", 120)
        figure("head change -> Ready on the new cluster", time.monotonic() - started)
        wait_for(lambda: sampler.samples[-1].all_answered, timeout=60, what="answers on the new cluster")
    assert sampler.longest_false_ready_s() <= DETECTION_S, sampler.describe()
    head = next(
        p
        for p in fleet.pods()
        if p["metadata"]["labels"].get("ray.io/node-type") == "head"
        and p["metadata"]["labels"]["ray.io/cluster"] == fleet.active_cluster()
    )
    assert head["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"
    fleet.document = bigger


def test_an_idle_fleet_drops_to_zero_workers_and_a_request_brings_one_back(fleet: Fleet) -> None:
    """Every model at min 0 and idle: Serve scales them to zero, the autoscaler removes the idle worker, and
    the fleet still says Ready (its models ScaledToZero, 0/0 workers). Meanwhile the operator's pod is
    deleted and its Deployment brings it back. Then one request per model, no client retry: autoscaler ->
    KubeRay's worker pod -> Ray node -> replica -> first token, every request answered."""
    asleep = json.loads(json.dumps(fleet.document))
    for model in asleep["spec"]["models"]:
        model["replicas"]["min"] = 0
    fleet.apply(asleep)
    fleet.document = asleep
    localray.wait_for(
        "both models ScaledToZero",
        lambda: set(fleet.model_states().values()) == {"ScaledToZero"},
        timeout_s=240,
        every_s=1,
    )
    models_asleep = time.monotonic()
    phases: list[str] = []
    operator_pods = Kube(fleet.kube.kubeconfig, OPERATOR_NAMESPACE)
    before = {p["metadata"]["uid"] for p in operator_pods.items("pods")}
    operator_pods.run("delete", "pods", "-l", "app.kubernetes.io/name=modelfleet-operator", "--wait=false")

    def no_workers() -> bool:
        phases.append(fleet.phase())
        return not fleet.worker_pods()

    localray.wait_for("the autoscaler to remove the idle worker", no_workers, timeout_s=420, every_s=2)
    figure("idle (every model ScaledToZero) -> 0 worker pods", time.monotonic() - models_asleep)
    assert set(phases) == {"Ready"}, f"the fleet left Ready while asleep: {phases}"
    operator_pods.run("rollout", "status", f"deployment/{fleet.operator}", "--timeout=120s", timeout=150)
    assert {p["metadata"]["uid"] for p in operator_pods.items("pods")}.isdisjoint(before), (
        "no new operator pod"
    )
    localray.wait_for(
        "status.workers at 0/0 (from the operator's new pod)",
        lambda: fleet.get()["status"].get("workers") == [{"group": WORKER_GROUP, "ready": 0, "desired": 0}],
        timeout_s=60,
        every_s=1,
    )
    status = fleet.get()["status"]
    assert (status["phase"], status["readyWorkers"]) == ("Ready", "0/0")
    assert {m["state"] for m in status["models"]} == {"ScaledToZero"}

    client = fleet.client(timeout_s=600)
    answers: dict[str, float] = {}
    errors: list[str] = []

    def ask(model: str) -> None:
        try:
            answers[model] = first_token_s(client, model)
        except Exception as error:  # every failure is the test's business
            errors.append(f"{model}: {type(error).__name__}: {error}"[:300])

    other = threading.Thread(target=ask, args=(SLEEPY,), daemon=True)
    with WakeTimeline(fleet, ALWAYS_ON) as timeline:
        other.start()
        ask(ALWAYS_ON)
        other.join(timeout=600)
    assert errors == [], errors
    for step, seconds in timeline.seen.items():
        figure(f"wake from zero workers: request -> {step}", seconds)
    figure("wake from zero workers: request -> first token", answers[ALWAYS_ON])
    assert list(timeline.seen) == ["worker pod created", "Ray node up", "replica RUNNING"], timeline.seen
    assert timeline.seen["replica RUNNING"] <= answers[ALWAYS_ON] + 1
    assert any(
        m.startswith(f"Waking: waiting for a worker in group {WORKER_GROUP}") for m in timeline.messages
    ), timeline.messages
    localray.wait_for(
        "the woken worker in status.workers",
        lambda: fleet.get()["status"].get("workers") == [{"group": WORKER_GROUP, "ready": 1, "desired": 1}],
        timeout_s=60,
        every_s=1,
    )


def test_deleting_the_fleet_removes_everything(fleet: Fleet) -> None:
    clusters = [c["metadata"]["name"] for c in fleet.kube.items("rayclusters.v1.ray.io")]
    assert clusters
    fleet.kube.run("delete", "modelfleet", fleet.name, "--wait=false")
    wait_for(
        lambda: fleet.kube.get("rayservices.v1.ray.io", fleet.name) is None,
        timeout=60,
        what="RayService gone",
    )
    wait_for(lambda: not fleet.kube.items("rayclusters.v1.ray.io"), timeout=120, what="RayClusters gone")
    wait_for(lambda: not fleet.pods(), timeout=120, what="Ray pods gone")
    wait_for(lambda: not pod_processes(fleet.kube.namespace), timeout=60, what="no Ray process left")
    print(f"[e2e] figures: {yaml.safe_dump(FIGURES, sort_keys=False)}", flush=True)
