"""Part 3, the operator at scale: 500 fleets against the real local control plane (tests/cluster).

kube-apiserver + etcd (+ kube-controller-manager) and `modelfleet operator` run as separate processes;
this process is the
client (creates and patches) and the observer (two watch streams, one for RayServices, one for
ModelFleets, timestamping the first time each state is seen). Measured:
- reconcile latency: fleet create call returned -> its RayService seen on the watch;
- status propagation: RayService status patch returned -> the fleet's status.phase becomes Ready,
  first paced (one patch every PACE_S, the steady state) then as one burst (the rest, back to back);
- operator RSS (peak) and CPU seconds, sampled with psutil;
- the floor: the same client creating RayServices directly and patching their status (no operator).
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.stats import ms, percentile
from modelfleet.localray import wait_for
from tests.support.kuberay import rayservice_status
from tests.support.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cluster" / "two-models-one-gpu.yaml"
FLEETS = 500
# Status propagation is measured on a sample of the fleets (all of them exist and are watched): PACED
# fleets one patch every PACE_S apart (the steady state), then BURST back to back.
PACED = 20
PACE_S = 1.0
BURST = 100
WAIT_S = 900
# A bound on the create phase, so a starved box still yields a (smaller, labelled) result.
CREATE_BUDGET_S = 600
MF = ("modelfleet.dev", "v1alpha1", "modelfleets")
RS = ("ray.io", "v1", "rayservices")


@contextlib.contextmanager
def control_plane(work_dir: Path) -> Iterator[tuple[Path, list[int]]]:
    """The real local control plane without the KubeRay process (this benchmark writes the RayService
    statuses itself; KubeRay would overwrite them and start 500 Ray clusters); yields its kubeconfig and
    the pids of kube-apiserver and etcd, whose CPU is the server side's cost."""
    from tests.cluster.controlplane import running

    with running(work_dir / "control-plane", kuberay=False) as plane:
        assert plane.apiserver.process is not None and plane.etcd.process is not None
        yield plane.kubeconfig, [plane.apiserver.process.pid, plane.etcd.process.pid]


class SampledOperator(OperatorProcess):
    """The operator as a child process, with psutil sampling of its memory and CPU."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path, *, args: tuple[str, ...] = ()) -> None:
        super().__init__(kubeconfig, namespace, log, args=args)
        self.rss_peak = 0
        self.rss_samples: list[tuple[float, int]] = []
        self._stop = threading.Event()

    def start(self, timeout_s: float = 120) -> None:
        super().start(timeout_s)
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        import psutil

        assert self.process is not None
        proc = psutil.Process(self.process.pid)
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                return
            self.rss_peak = max(self.rss_peak, rss)
            self.rss_samples.append((round(time.monotonic() - started, 2), rss))
            self._stop.wait(0.5)

    def usage(self) -> dict[str, float]:
        import psutil

        assert self.process is not None
        proc = psutil.Process(self.process.pid)
        cpu = proc.cpu_times()
        return {"cpu_s": cpu.user + cpu.system, "rss_bytes": proc.memory_info().rss}

    def wait_quiet(self, *, below: float = 0.05, window_s: float = 1.0, timeout_s: float = WAIT_S) -> bool:
        """Wait until the operator uses less than `below` of a core over `window_s`: its backlog is done."""
        deadline = time.monotonic() + timeout_s
        last = self.usage()["cpu_s"]
        while time.monotonic() < deadline:
            self._stop.wait(window_s)  # a sampling window under a deadline
            now = self.usage()["cpu_s"]
            if now - last < below * window_s:
                return True
            last = now
        return False

    def stop(self) -> None:
        self._stop.set()
        super().stop()


@dataclass
class Observer:
    """Watch streams that timestamp, per object name, the first ADDED and the first Ready phase."""

    api: Any
    namespace: str
    added: dict[str, dict[str, float]] = field(default_factory=lambda: {"rs": {}, "mf": {}})
    ready: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _watch(self, kind: str, gvr: tuple[str, str, str]) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.api.list_namespaced_custom_object,
                    *gvr[:2],
                    self.namespace,
                    gvr[2],
                    timeout_seconds=30,
                    _request_timeout=60,
                ):
                    at = time.monotonic()
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    self.added[kind].setdefault(name, at)
                    if kind == "mf" and (obj.get("status") or {}).get("phase") == "Ready":
                        self.ready.setdefault(name, at)
                    if self._stop.is_set():
                        break
            except Exception as error:  # a dropped watch is re-established; say so
                if not self._stop.is_set():
                    print(f"[operator] watch {kind} restarted: {error!r}", flush=True)
            finally:
                stream.stop()  # type: ignore[no-untyped-call]

    def start(self) -> None:
        for kind, gvr in (("rs", RS), ("mf", MF)):
            thread = threading.Thread(target=self._watch, args=(kind, gvr), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()


def _server_versions() -> str:
    from tests.cluster.binaries import BINARIES

    return f"kube-apiserver {BINARIES['kube-apiserver'].version}, etcd {BINARIES['etcd'].version}"


def fleet_body(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    doc["metadata"] = {"name": name}
    return doc


def kuberay_status(name: str, apps: list[str]) -> dict[str, Any]:
    """A RayService status as KubeRay v1.7 writes it for a healthy service."""
    return rayservice_status(name, dict.fromkeys(apps, ("RUNNING", "")), ready=True)


def _latencies(starts: dict[str, float], ends: dict[str, float]) -> dict[str, Any]:
    values = [ends[n] - starts[n] for n in starts if n in ends]
    return {
        "n": len(values),
        "missing": len(starts) - len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
    }


def _log(message: str) -> None:
    print(f"[operator {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _namespace(core: Any, name: str) -> None:
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def with_operator(api: Any, core: Any, kubeconfig: Path, work_dir: Path, fleets: int) -> dict[str, Any]:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    _namespace(core, namespace)
    # No Ray cluster answers here: KubeRay's status (written by this benchmark) is the whole input.
    operator = SampledOperator(kubeconfig, namespace, work_dir / "operator.log", args=("--no-serve-details",))
    operator.start()
    try:
        return _measure(api, operator, namespace, fleets)
    finally:
        operator.stop()


def _wait_count(what: str, found: dict[str, float], want: int) -> bool:
    """Wait until `want` names are in `found`; False (and a note) when the deadline passes first."""
    try:
        wait_for(what, lambda: len(found) >= want, timeout_s=WAIT_S, every_s=0.2)
    except TimeoutError:
        _log(f"timed out after {WAIT_S}s waiting for {what}: {len(found)}/{want}")
        return False
    return True


def _measure(api: Any, operator: SampledOperator, namespace: str, fleets: int) -> dict[str, Any]:
    idle = operator.usage()
    observer = Observer(api, namespace)
    observer.start()
    time.sleep(1)  # let both watches establish before the first create
    names = [f"fleet-{i:04d}" for i in range(fleets)]
    created: dict[str, float] = {}
    call_s: list[float] = []
    started = time.monotonic()
    for name in names:
        if time.monotonic() - started > CREATE_BUDGET_S:
            _log(f"stopped creating at {len(created)} fleets: the {CREATE_BUDGET_S:.0f}s budget is spent")
            break
        sent = time.monotonic()
        api.create_namespaced_custom_object(*MF[:2], namespace, MF[2], fleet_body(name))
        created[name] = time.monotonic()
        call_s.append(created[name] - sent)
    create_s = time.monotonic() - started
    _log(f"{len(created)} fleets created in {create_s:.1f}s")
    complete = _wait_count("every RayService", observer.added["rs"], len(created))
    reconciled_s = max(observer.added["rs"].values(), default=started) - started
    _log(f"all RayServices exist after {reconciled_s:.1f}s")
    # The paced sample measures the steady state: first let the operator finish the creates' backlog
    # (each fleet's first status write, kopf's bookkeeping), and time that too.
    quiet = operator.wait_quiet()
    settled_s = time.monotonic() - started
    _log(f"operator quiet after {settled_s:.1f}s" if quiet else "operator still busy at the deadline")
    after_create = operator.usage()
    apps = ["falcon3-1b", "qwen-0-5b"]
    patched: dict[str, float] = {}
    paced = min(PACED, fleets // 5)
    sample = [n for n in created if n in observer.added["rs"]][: paced + BURST]
    for i, name in enumerate(sample):
        if i < paced:
            time.sleep(PACE_S)  # the paced phase: one KubeRay status change every PACE_S
        api.patch_namespaced_custom_object_status(*RS[:2], namespace, RS[2], name, kuberay_status(name, apps))
        patched[name] = time.monotonic()
    _wait_count("the sampled fleets Ready", observer.ready, len(sample))
    burst_names = [n for n in sample[paced:] if n in observer.ready]
    burst_s = max(observer.ready[n] for n in burst_names) - patched[sample[paced]] if burst_names else None
    _log(f"all fleets Ready; burst of {len(burst_names)} propagated in {burst_s}s")
    time.sleep(2)  # let the operator finish its own bookkeeping before reading its usage
    end = operator.usage()
    observer.stop()
    paced_names = sample[:paced]
    burst_names = sample[paced:]
    return {
        "namespace": namespace,
        "fleets": len(created),
        "fleets_wanted": fleets,
        "all_reconciled": complete,
        "status_sample": {"paced": paced, "burst": len(sample) - paced},
        "create_calls": {"p50_ms": ms(percentile(call_s, 50)), "p99_ms": ms(percentile(call_s, 99))},
        "create_s": round(create_s, 2),
        "reconcile_latency": _latencies(created, observer.added["rs"]),
        "reconcile_throughput_per_s": round(len(observer.added["rs"]) / reconciled_s, 2),
        "settled_s": round(settled_s, 2),
        "settled": quiet,
        "status_propagation_paced": _latencies(
            {n: patched[n] for n in paced_names}, {n: observer.ready[n] for n in paced_names}
        ),
        "status_propagation_burst": _latencies(
            {n: patched[n] for n in burst_names}, {n: observer.ready[n] for n in burst_names}
        ),
        "status_burst_throughput_per_s": None if not burst_s else round(len(burst_names) / burst_s, 1),
        "paced_interval_s": PACE_S,
        "operator": {
            "rss_idle_mb": round(idle["rss_bytes"] / 2**20, 1),
            "rss_after_create_mb": round(after_create["rss_bytes"] / 2**20, 1),
            "rss_end_mb": round(end["rss_bytes"] / 2**20, 1),
            "rss_peak_mb": round(operator.rss_peak / 2**20, 1),
            "cpu_s_startup": round(idle["cpu_s"], 2),
            "cpu_s_create_phase": round(after_create["cpu_s"] - idle["cpu_s"], 2),
            "cpu_s_status_phase": round(end["cpu_s"] - after_create["cpu_s"], 2),
            "cpu_ms_per_fleet_create": round(
                (after_create["cpu_s"] - idle["cpu_s"]) * 1000 / max(1, len(observer.added["rs"])), 2
            ),
            "cpu_ms_per_status_change": round((end["cpu_s"] - after_create["cpu_s"]) * 1000 / len(sample), 2),
            "rss_samples_mb": [(t, round(r / 2**20, 1)) for t, r in operator.rss_samples[::4]],
        },
        "_template_rayservice": api.get_namespaced_custom_object(*RS[:2], namespace, RS[2], names[0]),
    }


def floor(api: Any, core: Any, template: dict[str, Any], fleets: int) -> dict[str, Any]:
    """The same client creating RayServices and patching their status directly: no operator at all."""
    namespace = f"floor-{uuid.uuid4().hex[:6]}"
    _namespace(core, namespace)
    body = {k: copy.deepcopy(template[k]) for k in ("apiVersion", "kind", "spec")}
    create_s: list[float] = []
    started = time.monotonic()
    for i in range(fleets):
        doc = {**body, "metadata": {"name": f"rs-{i:04d}"}}
        sent = time.monotonic()
        api.create_namespaced_custom_object(*RS[:2], namespace, RS[2], doc)
        create_s.append(time.monotonic() - sent)
    total_create = time.monotonic() - started
    patch_s: list[float] = []
    started = time.monotonic()
    for i in range(fleets):
        sent = time.monotonic()
        name = f"rs-{i:04d}"
        api.patch_namespaced_custom_object_status(
            *RS[:2], namespace, RS[2], name, kuberay_status(name, ["falcon3-1b", "qwen-0-5b"])
        )
        patch_s.append(time.monotonic() - sent)
    total_patch = time.monotonic() - started
    return {
        "rayservices": fleets,
        "create_throughput_per_s": round(fleets / total_create, 1),
        "create_call_p50_ms": ms(percentile(create_s, 50)),
        "create_call_p99_ms": ms(percentile(create_s, 99)),
        "status_patch_throughput_per_s": round(fleets / total_patch, 1),
        "status_patch_call_p50_ms": ms(percentile(patch_s, 50)),
        "status_patch_call_p99_ms": ms(percentile(patch_s, 99)),
    }


def run(work_dir: Path, *, fleets: int = FLEETS) -> dict[str, Any]:
    import psutil
    from kubernetes import client, config

    with control_plane(work_dir) as (kubeconfig, pids):
        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        api, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
        server = [psutil.Process(pid) for pid in pids]

        def server_cpu_s() -> float:
            return sum(sum(p.cpu_times()[:2]) for p in server)

        before, started = server_cpu_s(), time.monotonic()
        measured = with_operator(api, core, kubeconfig, work_dir, fleets)
        # The server side's own CPU over the same span (kube-apiserver + etcd): who the bottleneck is.
        measured["apiserver_cpu_s"] = round(server_cpu_s() - before, 2)
        measured["apiserver_rss_mb"] = round(sum(p.memory_info().rss for p in server) / 2**20, 1)
        measured["wall_s"] = round(time.monotonic() - started, 2)
        template = measured.pop("_template_rayservice")
        _log("floor: the same client creating RayServices directly")
        base = floor(api, core, template, measured["fleets"])
    return {
        "config": {"fleets": fleets, "paced": PACED, "pace_s": PACE_S, "server": _server_versions()},
        "with_operator": measured,
        "floor": base,
    }
