"""The pod runner: the kubelet's (and the scheduler's) part for the test cluster, on one machine.

It registers one Node, watches the pods of the namespaces that opt in by label (all, for
`make dev-cluster`), binds each to its Node and runs it as a kubelet would:
- every container of the pod, init containers first, each in a sandbox (sandbox.py) with its own mount
  and UTS namespaces: the pod's volumes at their `mountPath`s (podvolumes.py: Secrets, ConfigMaps, the
  projected ServiceAccount token, the downward API, emptyDirs), /etc/resolv.conf naming the cluster's DNS
  (clusterdns.py), the pod's hostname, and a read-only root file system when the container asks for one;
- the image a container names is a Python environment of this machine (images.py): the operator image is
  a virtualenv built like that image, every other image this project's virtualenv;
- the container's command and arguments, environment resolved as a kubelet does (values, downward API,
  Secrets, ConfigMaps, `$(VAR)`), plus `KUBERNETES_SERVICE_HOST`/`_PORT` (the API server at the node's
  address: there is no kube-proxy);
- readiness probes per container (HTTP, TCP and exec, the last inside the container's namespaces), a pod
  Ready when every container is;
- a container that exits is restarted in place under `restartPolicy: Always` (or `OnFailure` after a
  failure), with a kubelet's back-off; under `Never` it stays terminated and the pod ends Failed or
  Succeeded once all have;
- a deleted pod gets SIGTERM, its grace period (at most GRACE_CAP_S), then SIGKILL, and is removed.

Each pod has its own address on the pod network (podnet): its status.podIP, the address its processes
listen on and call "localhost". kube-controller-manager's EndpointSlice controller turns the reported
status into Service endpoints, as in a cluster.

What differs from a node, and why it does not hide what a user would meet:
- `ray start` gets `--node-ip-address=<pod IP>`: in a pod Ray finds its address itself; here every pod
  shares the machine's one network stack (podnet moves each pod's listeners to its address).
- Processes run as this user (root of a user namespace), whatever `runAsUser` says; resource limits are not
  enforced and no scheduling predicate but GPUs is checked (a pod asking for GPUs stays Pending, as on a
  node without them). Liveness probes are not run.
- The root file system is this machine's, with the image's environment on PATH: nothing is pulled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.cluster import images, podnet
from tests.cluster.clusterdns import Resolver, resolv_conf, serve_dns, serve_proxy
from tests.cluster.podvolumes import PodVolumes, VolumeError, field_value

log = logging.getLogger("podrunner")
NODE = "modelfleet-node"
NODE_IP = podnet.NODE_IP
# Every process of a pod carries these, so a sweep finds what a crashed runner (or container) left behind.
POD_MARKER, CONTAINER_MARKER, RUNNER_MARKER = (
    "MODELFLEET_POD",
    "MODELFLEET_CONTAINER",
    "MODELFLEET_POD_RUNNER",
)
SANDBOX = Path(__file__).with_name("sandbox.py")
WATCH_TIMEOUT_S = 60
GRACE_CAP_S = 15
TICK_S = 0.5
VOLUME_SYNC_S = 2.0
# A kubelet's restart back-off: the first restart at once, then 10 s doubling up to 5 minutes.
BACKOFF_S, BACKOFF_MAX_S = 10.0, 300.0
GPU = "nvidia.com/gpu"
RAY_TEMP = "/tmp/ray"


def now() -> str:
    """RFC 3339, as Kubernetes writes times (the operator's own helper would import all of it)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names replaced, `$$(VAR)` escapes, unknown ones kept."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$?\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


@dataclass
class Container:
    """One container of a pod: its process and what the kubelet reports of it."""

    spec: Any
    init: bool = False
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restarts: int = 0
    started_at: str = ""
    terminated: dict[str, Any] | None = None  # the state, while it is not running
    last_state: dict[str, Any] | None = None  # the previous run's end, after a restart
    restart_at: float | None = None  # monotonic time of the next start (back-off)
    successes: int = 0
    failures: int = 0
    next_probe: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class RunningPod:
    """One pod's containers, files and the status the runner reports for it."""

    pod: Any
    ip: str
    root: Path  # the pod's files: home, volumes, container logs
    tmp: Path  # its /tmp/ray (Ray's temp dir), when no volume is mounted there
    volumes: PodVolumes
    containers: list[Container] = field(default_factory=list)
    initialized: bool = False
    phase: str = "Pending"
    started_at: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)
    reported: str = ""

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"

    @property
    def marker(self) -> str:
        return f"{self.key}/{self.pod.metadata.uid}"


class PodRunner:
    """Watches pods and plays the kubelet for them."""

    def __init__(
        self,
        core: Any,
        discovery: Any,
        state: Path,
        *,
        namespace_selector: str | None,
        runner_id: str,
        api_server: str,
    ) -> None:
        self.core, self.state = core, state
        self.resolver = Resolver(discovery, core)
        self.namespace_selector = namespace_selector
        self.shim = podnet.shim()
        self.addresses = podnet.Addresses()
        self.pods: dict[str, RunningPod] = {}  # by pod uid
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.runner_id = runner_id
        self.tmp = pods_tmp(runner_id)
        self.started = 0
        found = re.fullmatch(r"https://([^:/]+):(\d+)/?", api_server)
        if found is None:
            raise ValueError(f"--api-server {api_server!r}: expected https://HOST:PORT")
        self.api_host, self.api_port = found.group(1), found.group(2)

    # --- the node --------------------------------------------------------------------------------------

    def register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"},
            },
        }
        with contextlib.suppress(Exception):
            self.core.create_node(body)
        capacity = {"cpu": str(os.cpu_count() or 2), "memory": "256Gi", "pods": "250"}
        status = {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [
                    {"type": "InternalIP", "address": NODE_IP},
                    {"type": "Hostname", "address": NODE},
                ],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "PodRunnerReady",
                        "message": "the pod runner of the test cluster runs pods here",
                        "lastHeartbeatTime": now(),
                        "lastTransitionTime": now(),
                    }
                ],
            }
        }
        self.core.patch_node_status(NODE, status)

    # --- which pods are ours ---------------------------------------------------------------------------

    def _namespace_selected(self, namespace: str) -> bool:
        if not self.namespace_selector:
            return True
        found = self.core.list_namespace(
            label_selector=self.namespace_selector, field_selector=f"metadata.name={namespace}"
        ).items
        return bool(found)

    # --- the watch -------------------------------------------------------------------------------------

    def run(self) -> None:
        from kubernetes import watch

        self.register_node()
        version = ""
        while not self.stopped.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                if not version:
                    listed = self.core.list_pod_for_all_namespaces()
                    for pod in listed.items:
                        self.on_pod("ADDED", pod)
                    version = listed.metadata.resource_version
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    resource_version=version,
                    timeout_seconds=WATCH_TIMEOUT_S,
                    _request_timeout=WATCH_TIMEOUT_S + 10,
                ):
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    self.on_pod(event["type"], pod)
                    if self.stopped.is_set():
                        break
            except Exception as error:  # API server away or the watch expired: list again
                if not self.stopped.is_set():
                    log.warning("pod watch restarts: %s", error)
                    version = ""
                    self.stopped.wait(1)
            finally:
                stream.stop()  # type: ignore[no-untyped-call]

    def on_pod(self, kind: str, pod: Any) -> None:
        uid = pod.metadata.uid
        with self.lock:
            known = self.pods.get(uid)
        if kind == "DELETED":
            if known is not None:
                threading.Thread(target=self.stop_pod, args=(known,), daemon=True).start()
            return
        if pod.metadata.deletion_timestamp is not None:
            if known is not None or pod.spec.node_name == NODE:
                threading.Thread(target=self.finish_delete, args=(pod, known), daemon=True).start()
            return
        if known is not None or pod.status.phase in ("Succeeded", "Failed"):
            return
        if pod.spec.node_name not in (None, NODE) or not self._namespace_selected(pod.metadata.namespace):
            return
        if not self._fits(pod):
            return
        root = self.state / f"{pod.metadata.namespace}_{pod.metadata.name}_{uid[:8]}"
        with self.lock:
            self.started += 1
            ip = self.addresses.take()
            volumes = PodVolumes(
                self.core,
                pod,
                root,
                Path("/dev/shm") / f"mfpods-{self.runner_id[:8]}" / str(self.started),
                ip=ip,
                node=NODE,
                node_ip=NODE_IP,
            )
            running = RunningPod(pod=pod, ip=ip, root=root, tmp=self.tmp / str(self.started), volumes=volumes)
            self.pods[uid] = running
        threading.Thread(target=self.run_pod, args=(running,), name=running.key, daemon=True).start()

    def _fits(self, pod: Any) -> bool:
        """The scheduler's one predicate here: this node has no GPUs. A pod that asks for one stays
        Pending and says why, as on a cluster without GPU nodes."""
        wanted = sum(
            float(((c.resources and c.resources.limits) or {}).get(GPU, 0) or 0) for c in pod.spec.containers
        )
        if wanted <= 0:
            return True
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": f"0/1 nodes are available: 1 Insufficient {GPU}.",
            "lastTransitionTime": now(),
        }
        with contextlib.suppress(Exception):
            self.core.patch_namespaced_pod_status(
                pod.metadata.name, pod.metadata.namespace, {"status": {"conditions": [condition]}}
            )
        return False

    # --- one pod ---------------------------------------------------------------------------------------

    def run_pod(self, running: RunningPod) -> None:
        try:
            self._bind(running)
            self._run(running)
        except Exception as error:
            log.exception("pod %s", running.key)
            self.kill_all(running)
            if not running.stopping.is_set():
                running.phase = "Failed"
                with contextlib.suppress(Exception):
                    self._report(running, message=f"pod runner: {error}")

    def _bind(self, running: RunningPod) -> None:
        pod = running.pod
        if pod.spec.node_name == NODE:
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.metadata.name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        }
        # The client cannot read a Binding back (its response is a Status): skip the decoding.
        self.core.create_namespaced_pod_binding(
            pod.metadata.name, pod.metadata.namespace, binding, _preload_content=False
        )

    def _run(self, running: RunningPod) -> None:
        pod = running.pod
        for sub in ("home", "logs", "sandbox"):
            (running.root / sub).mkdir(parents=True, exist_ok=True)
        running.tmp.mkdir(parents=True, exist_ok=True)
        running.started_at = now()
        running.containers = [Container(c, init=True) for c in pod.spec.init_containers or []]
        running.containers += [Container(c) for c in pod.spec.containers]
        self._report(running)
        while True:  # a kubelet waits for a missing Secret or ConfigMap the pod needs
            try:
                running.volumes.sync()
                break
            except VolumeError as error:
                self._report(running, message=str(error), waiting_reason="ContainerCreating")
                if running.stopping.wait(2):
                    return
        for init in (c for c in running.containers if c.init):
            self._start(running, init)
            assert init.process is not None
            code = init.process.wait()
            self._ended(running, init, code)
            if running.stopping.is_set():
                return
            if code != 0:
                running.phase = "Failed"
                self._report(running, message=f"init container {init.name} exited with {code}")
                return
        running.initialized = True
        for container in (c for c in running.containers if not c.init):
            self._start(running, container)
        running.phase = "Running"
        self._report(running)
        self._supervise(running)

    def _supervise(self, running: RunningPod) -> None:
        """Until the pod ends or is deleted: restarts by restartPolicy, probes, volume refreshes, status."""
        policy = running.pod.spec.restart_policy or "Always"
        synced = time.monotonic()
        while not running.stopping.wait(TICK_S):
            moment = time.monotonic()
            if moment - synced >= VOLUME_SYNC_S:
                with contextlib.suppress(VolumeError):
                    running.volumes.sync()
                synced = moment
            for container in (c for c in running.containers if not c.init):
                if container.process is not None and container.process.poll() is not None:
                    code = container.process.returncode
                    self._ended(running, container, code)
                    if policy == "Always" or (policy == "OnFailure" and code != 0):
                        delay = 0.0 if container.restarts == 0 else BACKOFF_S * 2 ** (container.restarts - 1)
                        container.restart_at = moment + min(delay, BACKOFF_MAX_S)
                if (
                    container.restart_at is not None
                    and moment >= container.restart_at
                    and not running.stopping.is_set()
                ):
                    container.restart_at = None
                    container.restarts += 1
                    container.last_state, container.terminated = container.terminated, None
                    self._start(running, container)
                if container.running:
                    self._probe_on_period(running, container)
            app = [c for c in running.containers if not c.init]
            if all(not c.running and c.restart_at is None for c in app):
                failed = any((c.terminated or {}).get("exitCode", 0) != 0 for c in app)
                running.phase = "Failed" if failed else "Succeeded"
                self._report(running)
                return
            self._report(running)

    def _ended(self, running: RunningPod, container: Container, code: int) -> None:
        log.info("pod %s container %s exited with %s", running.key, container.name, code)
        self._kill(running, container)  # what it left behind goes with it, as with a container's PID 1
        container.ready = False
        container.successes = container.failures = 0
        container.terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": container.started_at,
            "finishedAt": now(),
        }
        container.process = None

    # --- a container's environment and process -----------------------------------------------------------

    def _environment(self, running: RunningPod, container: Any, image: images.Image) -> dict[str, str]:
        pod = running.pod
        env = {
            "PATH": image.path,
            "LANG": "C.UTF-8",
            **image.env,
            "HOME": str(running.root / "home"),
            "HOSTNAME": _hostname(pod),
            # The `kubernetes` Service, as a kubelet puts it in every container (there is no kube-proxy:
            # the API server's own address).
            "KUBERNETES_SERVICE_HOST": self.api_host,
            "KUBERNETES_SERVICE_PORT": self.api_port,
            "KUBERNETES_SERVICE_PORT_HTTPS": self.api_port,
            "KUBERNETES_PORT": f"tcp://{self.api_host}:{self.api_port}",
        }
        if image.ray:
            env.update(VLLM_HOST_IP=running.ip, VLLM_CACHE_ROOT=str(self.state / "vllm-cache"))
        for source in container.env_from or []:
            prefix = source.prefix or ""
            ref = source.config_map_ref or source.secret_ref
            kind = "config_map" if source.config_map_ref is not None else "secret"
            data = self._data(pod.metadata.namespace, kind, ref.name, bool(ref.optional))
            env.update({prefix + key: value for key, value in data.items()})
        for var in container.env or []:
            value = self._env_value(running, container, var, env)
            if value is not None:
                env[var.name] = value
        env.update(
            {
                "LD_PRELOAD": str(self.shim),
                "PODNET_IP": running.ip,
                POD_MARKER: running.marker,
                CONTAINER_MARKER: f"{running.marker}/{container.name}",
                RUNNER_MARKER: self.runner_id,
            }
        )
        return env

    def _env_value(self, running: RunningPod, container: Any, var: Any, env: dict[str, str]) -> str | None:
        source = var.value_from
        if source is None:
            return _expand(var.value or "", env)
        if source.field_ref is not None:
            return field_value(running.pod, source.field_ref.field_path, running.ip, NODE, NODE_IP)
        if source.secret_key_ref is not None or source.config_map_key_ref is not None:
            ref = source.secret_key_ref or source.config_map_key_ref
            kind = "secret" if source.secret_key_ref is not None else "config_map"
            value = self._data(running.pod.metadata.namespace, kind, ref.name, bool(ref.optional)).get(
                ref.key
            )
            if value is None and not ref.optional:
                raise RuntimeError(f"{kind.replace('_', '')} {ref.name} has no key {ref.key}")
            return value
        if source.resource_field_ref is not None:
            limits = (container.resources.limits or {}) if container.resources else {}
            return str(limits.get(source.resource_field_ref.resource.split(".", 1)[-1], ""))
        return None

    def _data(self, namespace: str, kind: str, name: str, optional: bool) -> dict[str, str]:
        """A Secret's (decoded) or a ConfigMap's data; {} for an optional one that does not exist."""
        import base64

        try:
            found = getattr(self.core, f"read_namespaced_{kind}")(name, namespace)
        except Exception:
            if optional:
                return {}
            raise
        data = dict(found.data or {})
        return {k: base64.b64decode(v).decode() for k, v in data.items()} if kind == "secret" else data

    def _command(
        self, running: RunningPod, container: Any, env: dict[str, str], image: images.Image
    ) -> list[str]:
        command = container.command or list(image.entrypoint)
        argv = [_expand(part, env) for part in [*command, *(container.args or [])]]
        if not argv:
            raise RuntimeError(f"container {container.name} has no command and its image no entrypoint")
        return [re.sub(r"\bray start\b", f"ray start --node-ip-address={running.ip}", part) for part in argv]

    def _start(self, running: RunningPod, container: Container) -> None:
        spec = container.spec
        image = images.image(spec.image or "")
        env = self._environment(running, spec, image)
        argv = self._command(running, spec, env, image)
        security = spec.security_context
        mounts = running.volumes.mounts(spec)
        if image.ray and not any(m["target"] == RAY_TEMP for m in mounts):
            # The pod's own Ray temp dir (its image's writable layer, in a pod), unless a volume is mounted
            # there (KubeRay's log volume on a head that runs the autoscaler).
            mounts.append({"source": str(running.tmp), "target": RAY_TEMP, "readonly": False})
        sandbox = {
            "hostname": _hostname(running.pod),
            "scratch": str(running.root / "sandbox" / f"{container.name}-{container.restarts}"),
            "mounts": mounts,
            "files": {
                "/etc/resolv.conf": resolv_conf(running.pod.metadata.namespace, NODE_IP),
                "/etc/hosts": _hosts(running),
                "/etc/hostname": _hostname(running.pod) + "\n",
            },
            "read_only_root": bool(security and security.read_only_root_filesystem),
            "workdir": spec.working_dir or image.workdir or env["HOME"],
            "argv": argv,
        }
        spec_file = running.root / "sandbox" / f"{container.name}-{container.restarts}.json"
        spec_file.write_text(json.dumps(sandbox))
        log.info("pod %s (%s) container %s: %s", running.key, running.ip, spec.name, shlex.join(argv))
        with (running.root / "logs" / f"{spec.name}.log").open("ab") as out:
            container.process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SANDBOX), str(spec_file)],
                cwd=running.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        container.started_at = now()
        container.next_probe = time.monotonic() + (
            (spec.readiness_probe and spec.readiness_probe.initial_delay_seconds) or 0
        )

    # --- readiness --------------------------------------------------------------------------------------

    def _probe_on_period(self, running: RunningPod, container: Container) -> None:
        probe = container.spec.readiness_probe
        if probe is None:
            container.ready = True
            return
        moment = time.monotonic()
        if moment < container.next_probe:
            return
        ok = self._probe(running, container, probe)
        container.successes, container.failures = (
            (container.successes + 1, 0) if ok else (0, container.failures + 1)
        )
        if not container.ready and container.successes >= (probe.success_threshold or 1):
            container.ready = True
            log.info("pod %s container %s is ready", running.key, container.name)
        elif container.ready and container.failures >= (probe.failure_threshold or 3):
            container.ready = False
            log.info("pod %s container %s is not ready", running.key, container.name)
        # Not ready yet: look again soon (a kubelet probes on its period; a second is kinder to tests).
        period = probe.period_seconds or 10
        container.next_probe = moment + (period if container.ready else min(period, 1))

    def _probe(self, running: RunningPod, container: Container, probe: Any) -> bool:
        timeout = probe.timeout_seconds or 1
        spec = container.spec
        if probe.http_get is not None or probe.tcp_socket is not None:
            action = probe.http_get or probe.tcp_socket
            port = action.port
            if isinstance(port, str) and not port.isdigit():
                port = next(p.container_port for p in spec.ports or [] if p.name == port)
            host = action.host or running.ip
            if probe.tcp_socket is not None:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((host, int(port)), timeout=timeout),
                ):
                    return True
                return False
            url = f"http://{host}:{port}{probe.http_get.path or '/'}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return bool(200 <= response.status < 400)
            except (urllib.error.URLError, OSError, ValueError):
                return False
        action = getattr(probe, "_exec", None)  # the client names the field `_exec` (exec is a keyword)
        if action is None or container.process is None:
            return True
        env = self._environment(running, spec, images.image(spec.image or ""))
        try:  # inside the container's mount and UTS namespaces, as a runtime's exec is
            done = subprocess.run(
                ["nsenter", f"--target={container.process.pid}", "--mount", "--uts", "--", *action.command],
                env=env,
                cwd="/",
                capture_output=True,
                timeout=timeout + 5,
                check=False,
            )
        except (subprocess.TimeoutExpired, OSError):
            return False
        return done.returncode == 0

    # --- status ------------------------------------------------------------------------------------------

    def _report(self, running: RunningPod, *, message: str = "", waiting_reason: str = "") -> None:
        """Patch the pod's status when it changed since the last report."""
        ready = running.phase == "Running" and all(c.ready for c in running.containers if not c.init)
        stamp = now()

        def condition(kind: str, status: bool) -> dict[str, str]:
            return {"type": kind, "status": "True" if status else "False", "lastTransitionTime": stamp}

        def state(container: Container) -> dict[str, Any]:
            if container.running:
                return {"running": {"startedAt": container.started_at}}
            if container.terminated is not None and container.restart_at is None:
                return {"terminated": container.terminated}
            if container.restart_at is not None:
                return {
                    "waiting": {"reason": "CrashLoopBackOff" if container.restarts else "ContainerCreating"}
                }
            return {
                "waiting": {
                    "reason": waiting_reason or "PodInitializing",
                    **({"message": message} if message else {}),
                }
            }

        def status_of(container: Container) -> dict[str, Any]:
            return {
                "name": container.name,
                "image": container.spec.image or "",
                "imageID": "",
                "ready": container.ready,
                "restartCount": container.restarts,
                "started": container.running,
                "state": state(container),
                **({"lastState": {"terminated": container.last_state}} if container.last_state else {}),
            }

        status: dict[str, Any] = {
            "phase": running.phase,
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": running.ip,
            "podIPs": [{"ip": running.ip}],
            "startTime": running.started_at,
            "conditions": [
                condition("PodScheduled", True),
                condition("Initialized", running.initialized),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "containerStatuses": [status_of(c) for c in running.containers if not c.init],
            "initContainerStatuses": [status_of(c) for c in running.containers if c.init],
            **({"message": message} if message else {}),
        }
        # Times change on every call: compare without them.
        fingerprint = json.dumps(status, sort_keys=True).replace(stamp, "")
        if fingerprint == running.reported:
            return
        try:
            self.core.patch_namespaced_pod_status(
                running.pod.metadata.name, running.pod.metadata.namespace, {"status": status}
            )
            running.reported = fingerprint
        except Exception as error:
            if getattr(error, "status", None) != 404:  # a pod deleted meanwhile needs no status
                log.warning("status of pod %s: %s", running.key, error)

    # --- stopping ----------------------------------------------------------------------------------------

    def _kill(self, running: RunningPod, container: Container, sig: int = signal.SIGKILL) -> None:
        if container.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(container.process.pid, sig)
        if sig == signal.SIGKILL:
            sweep(f"{CONTAINER_MARKER}={running.marker}/{container.name}".encode())
            if container.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    container.process.wait(timeout=10)

    def kill_all(self, running: RunningPod) -> None:
        for container in running.containers:
            self._kill(running, container)
        sweep(f"{POD_MARKER}={running.marker}".encode())

    def stop_pod(self, running: RunningPod, grace_s: float = 0) -> None:
        """SIGTERM to every container, up to `grace_s` for them to end, then SIGKILL to what is left."""
        running.stopping.set()
        if grace_s > 0:
            for container in running.containers:
                if container.running:
                    self._kill(running, container, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while any(c.running for c in running.containers) and time.monotonic() < deadline:
                time.sleep(0.2)  # a poll under the grace period's deadline
        self.kill_all(running)
        with self.lock:
            self.pods.pop(running.pod.metadata.uid, None)
            self.addresses.give_back(running.ip)
        running.volumes.remove()

    def finish_delete(self, pod: Any, known: RunningPod | None) -> None:
        """A kubelet's part of a graceful delete: stop the containers, then remove the pod for good."""
        if known is not None:
            grace = pod.metadata.deletion_grace_period_seconds
            self.stop_pod(known, min(GRACE_CAP_S, 30 if grace is None else grace))
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        with contextlib.suppress(Exception):
            self.core.delete_namespaced_pod(
                pod.metadata.name,
                pod.metadata.namespace,
                body=V1DeleteOptions(
                    grace_period_seconds=0, preconditions=V1Preconditions(uid=pod.metadata.uid)
                ),
            )

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            pods = list(self.pods.values())
        for running in pods:
            self.stop_pod(running)
        sweep(f"{RUNNER_MARKER}={self.runner_id}".encode())


def _hostname(pod: Any) -> str:
    return str(pod.spec.hostname or pod.metadata.name)[:63]


def _hosts(running: RunningPod) -> str:
    """The kubelet-managed /etc/hosts of a pod."""
    return (
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{running.ip}\t{_hostname(running.pod)}\n"
    )


def _marked_processes() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, environment) of every live process but this one (zombies skipped)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            yield int(entry.name), environ


def pod_processes(namespace: str) -> list[int]:
    """Pids of the pod processes of one namespace still alive (the runner marks each with its pod)."""
    prefix = f"{POD_MARKER}={namespace}/".encode()
    return [pid for pid, environ in _marked_processes() if any(var.startswith(prefix) for var in environ)]


def pods_tmp(runner_id: str) -> Path:
    """Where the runner's pods keep their /tmp/ray, one folder per runner, removed when the runner or its
    control plane stops."""
    return Path(tempfile.gettempdir()) / f"mfpods-{runner_id[:8]}"


def sweep(marker: bytes) -> int:
    """SIGKILL every process whose environment holds `marker` (KEY=value); how many there were."""
    killed = 0
    for pid, environ in _marked_processes():
        if marker in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.podrunner", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state", type=Path, required=True, help="where pods keep their files and logs")
    parser.add_argument("--proxy-port", type=int, required=True, help="cluster-DNS HTTP proxy on 127.0.0.1")
    parser.add_argument(
        "--api-server", required=True, help="the API server as pods reach it (https://IP:PORT)"
    )
    parser.add_argument("--namespace-selector", help="run pods only in namespaces with these labels")
    parser.add_argument("--runner-id", required=True, help="marks every pod process, for the final sweep")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from kubernetes import client, config

    podnet.ensure_routes()
    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    runner = PodRunner(
        client.CoreV1Api(api),
        client.DiscoveryV1Api(api),
        args.state,
        namespace_selector=args.namespace_selector,
        runner_id=args.runner_id,
        api_server=args.api_server,
    )

    def on_signal(_signum: int, _frame: Any) -> None:
        runner.stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = asyncio.new_event_loop()
    proxy = loop.run_until_complete(serve_proxy(runner.resolver, args.proxy_port))
    dns = loop.run_until_complete(serve_dns(runner.resolver, NODE_IP))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    watcher = threading.Thread(target=runner.run, daemon=True)
    watcher.start()
    print(json.dumps({"ready": True, "proxy": f"http://127.0.0.1:{args.proxy_port}"}), flush=True)
    runner.stopped.wait()
    runner.stop()
    loop.call_soon_threadsafe(proxy.close)
    loop.call_soon_threadsafe(dns.close)
    shutil.rmtree(runner.tmp, ignore_errors=True)
    shutil.rmtree(Path("/dev/shm") / f"mfpods-{runner.runner_id[:8]}", ignore_errors=True)
    shutil.rmtree(args.state / "vllm-cache", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
