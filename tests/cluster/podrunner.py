"""The Ray pod runner: the kubelet's part for the Pods KubeRay creates, on one machine (test infrastructure).

It watches KubeRay's pods (in namespaces that opt in by label, or all), binds each to the one Node it
registers, and runs the pod's Ray container as local processes from this project's virtualenv, which
stands in for the serving image: the container's own command and arguments (KubeRay's `ray start ...`),
its environment resolved as a kubelet would (values, downward API, Secrets, `$(VAR)`), init containers
first. Each pod gets its own address from the pod network (`podnet`): its status.podIP, the address its
processes listen on and call "localhost". Readiness comes from the pod's own readiness probe; the pod
status (phase, conditions, container states) is written through the API, and kube-controller-manager's
EndpointSlice controller turns it into Service endpoints, as in a cluster.

What it changes on the way, and why:
- `--node-ip-address=<pod IP>` is added to `ray start`: in a pod Ray finds its address itself, here the
  machine has one network for all pods.
- Service names in the command (a worker's head address) are resolved at start (`clusterdns`): there is
  no cluster DNS server.
- A container that exits makes its pod Failed (KubeRay then deletes it and creates a new one), where a
  kubelet with restartPolicy Always would restart the container in place. Liveness probes are not run.
- Containers other than the Ray container (KubeRay's autoscaler sidecar) are not run; they show as
  waiting with reason NotRunByTestRunner.
- Secret and ConfigMap volumes (`secret` and `projected` secret sources, `configMap`) are written under the
  pod's folder at start and again whenever the environment is resolved (each exec probe), as a kubelet
  refreshes them, with the volume's file mode; an environment value naming a path under their mount path is
  pointed there: the processes share this machine's file system. Other volumes are not modelled.
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

from tests.cluster import podnet
from tests.cluster.clusterdns import Resolver, serve_proxy

log = logging.getLogger("podrunner")
NODE = "modelfleet-node"
NODE_IP = str(next(podnet.POD_CIDR.hosts()))
KUBERAY_PODS = "app.kubernetes.io/created-by=kuberay-operator"
# Every process of a pod carries these, so a sweep finds what a crashed runner left behind.
POD_MARKER, RUNNER_MARKER = "MODELFLEET_POD", "MODELFLEET_POD_RUNNER"
VENV_BIN = Path(sys.executable).parent
# What the serving image's environment would hold on this machine: the venv first on PATH, no network.
IMAGE_ENV = {
    "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "NO_COLOR": "1",
}
WATCH_TIMEOUT_S = 60


def now() -> str:
    """RFC 3339, as Kubernetes writes times (the operator's own helper would import all of it)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field(pod: Any, path: str) -> str:
    """A downward-API fieldRef of the pod (the paths KubeRay and users use)."""
    meta = pod.metadata
    labels = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if labels:
        source = meta.labels if labels.group(1) == "labels" else meta.annotations
        return str((source or {}).get(labels.group(2), ""))
    return {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": NODE,
        "spec.serviceAccountName": pod.spec.service_account_name or "default",
        "status.hostIP": NODE_IP,
    }.get(path, "")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names replaced, `$$(VAR)` escapes, unknown ones kept."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$?\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


@dataclass
class RayPod:
    """One pod's processes and the status the runner reports for it."""

    pod: Any
    ip: str
    root: Path  # the pod's files: home, container logs
    tmp: Path  # its /tmp: short, because Ray's sockets live below it (AF_UNIX paths end at 107 bytes)
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    started_at: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"

    @property
    def ray_container(self) -> Any:
        return self.pod.spec.containers[0]


class PodRunner:
    """Watches KubeRay's pods and plays the kubelet for them."""

    def __init__(
        self, core: Any, discovery: Any, state: Path, namespace_selector: str | None, runner_id: str
    ) -> None:
        self.core, self.state = core, state
        self.resolver = Resolver(discovery, core)
        self.namespace_selector = namespace_selector
        self.shim = podnet.shim()
        self.addresses = podnet.Addresses()
        self.pods: dict[str, RayPod] = {}  # by pod uid
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.runner_id = runner_id
        self.tmp = pods_tmp(runner_id)
        self.started = 0

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
                        "message": "the Ray pod runner of the test cluster runs pods here",
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
                    listed = self.core.list_pod_for_all_namespaces(label_selector=KUBERAY_PODS)
                    for pod in listed.items:
                        self.on_pod("ADDED", pod)
                    version = listed.metadata.resource_version
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    label_selector=KUBERAY_PODS,
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
                self.stop_pod(known)
            return
        if pod.metadata.deletion_timestamp is not None:
            if known is not None or pod.spec.node_name == NODE:
                threading.Thread(target=self.finish_delete, args=(pod, known), daemon=True).start()
            return
        if known is not None or pod.status.phase in ("Succeeded", "Failed"):
            return
        if pod.spec.node_name not in (None, NODE) or not self._namespace_selected(pod.metadata.namespace):
            return
        root = self.state / f"{pod.metadata.namespace}_{pod.metadata.name}"
        with self.lock:
            self.started += 1
            ray_pod = RayPod(pod=pod, ip=self.addresses.take(), root=root, tmp=self.tmp / str(self.started))
            self.pods[uid] = ray_pod
        threading.Thread(target=self.run_pod, args=(ray_pod,), name=ray_pod.key, daemon=True).start()

    # --- one pod ---------------------------------------------------------------------------------------

    def run_pod(self, ray_pod: RayPod) -> None:
        try:
            self._bind(ray_pod)
            self._run(ray_pod)
        except Exception:
            log.exception("pod %s", ray_pod.key)
            self.kill_processes(ray_pod)
            with contextlib.suppress(Exception):
                self._report(ray_pod, phase="Failed", exit_code=-1, reason="RunnerError")

    def _bind(self, ray_pod: RayPod) -> None:
        pod = ray_pod.pod
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

    def _run(self, ray_pod: RayPod) -> None:
        pod = ray_pod.pod
        for sub in ("home", "logs"):
            (ray_pod.root / sub).mkdir(parents=True, exist_ok=True)
        ray_pod.tmp.mkdir(parents=True, exist_ok=True)
        ray_pod.started_at = now()
        self._report(ray_pod, phase="Pending", initialized=False)
        for init in pod.spec.init_containers or []:
            code = self._start(ray_pod, init, ray_pod.root / "logs" / f"{init.name}.log").wait()
            if ray_pod.stopping.is_set():
                return
            if code != 0:
                self._report(ray_pod, phase="Failed", exit_code=code, reason="InitContainerFailed")
                return
        ray_pod.process = self._start(ray_pod, ray_pod.ray_container, ray_pod.root / "logs" / "ray.log")
        self._report(ray_pod, phase="Running")
        self._probe_until_exit(ray_pod)
        if ray_pod.stopping.is_set():
            return
        code = ray_pod.process.returncode
        log.info("pod %s: the Ray container exited with %s", ray_pod.key, code)
        self.kill_processes(ray_pod)
        self._report(ray_pod, phase="Succeeded" if code == 0 else "Failed", exit_code=code, reason="Error")

    def _environment(self, ray_pod: RayPod, container: Any) -> dict[str, str]:
        env = {
            **IMAGE_ENV,
            "HOME": str(ray_pod.root / "home"),
            "TMPDIR": str(ray_pod.tmp),  # Ray's temp dir (/tmp/ray in a pod) lands here
            "RAY_TMPDIR": str(ray_pod.tmp),
            "VLLM_HOST_IP": ray_pod.ip,
            "VLLM_CACHE_ROOT": str(self.state / "vllm-cache"),
            "HOSTNAME": ray_pod.pod.metadata.name,
        }
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = _expand(var.value or "", env)
            elif var.value_from.field_ref is not None:
                path = var.value_from.field_ref.field_path
                env[var.name] = (
                    ray_pod.ip if path in ("status.podIP", "status.podIPs") else _field(ray_pod.pod, path)
                )
            elif var.value_from.secret_key_ref is not None:
                ref = var.value_from.secret_key_ref
                value = self._secret(ray_pod.pod.metadata.namespace, ref.name, ref.key, bool(ref.optional))
                if value is not None:
                    env[var.name] = value
            elif var.value_from.resource_field_ref is not None:
                ref = var.value_from.resource_field_ref
                limits = (container.resources.limits or {}) if container.resources else {}
                env[var.name] = str(limits.get(ref.resource.split(".", 1)[-1], ""))
        for mount_path, local in self._file_volumes(ray_pod, container).items():
            for name, value in env.items():
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    env[name] = str(local) + value[len(mount_path.rstrip("/")) :]
        env.update(
            {
                "LD_PRELOAD": str(self.shim),
                "PODNET_IP": ray_pod.ip,
                POD_MARKER: f"{ray_pod.key}/{ray_pod.pod.metadata.uid}",
                RUNNER_MARKER: self.runner_id,
            }
        )
        return env

    def _file_volumes(self, ray_pod: RayPod, container: Any) -> dict[str, Path]:
        """{mount path: local folder} of the container's Secret and ConfigMap volumes, their files written
        as a kubelet lays them out (`items` paths, or one file per key) with the volume's mode."""
        volumes = {v.name: v for v in ray_pod.pod.spec.volumes or []}
        out: dict[str, Path] = {}
        for mount in container.volume_mounts or []:
            volume = volumes.get(mount.name)
            if volume is None:
                continue
            projected = volume.projected.sources or [] if volume.projected else []
            secrets = [s.secret for s in projected if s.secret] + ([volume.secret] if volume.secret else [])
            # ConfigMap volumes; not the one in the service account's projected volume (kube-root-ca.crt,
            # which this control plane does not publish: a pod's processes never read it here).
            maps = [volume.config_map] if volume.config_map else []
            if not secrets and not maps:
                continue
            local = ray_pod.root / "volumes" / mount.name
            mode = (volume.projected or volume.secret or volume.config_map).default_mode
            for source in secrets:
                name = getattr(source, "secret_name", None) or source.name
                for key, path in self._secret_items(ray_pod, name, source):
                    value = self._secret(ray_pod.pod.metadata.namespace, name, key, bool(source.optional))
                    if value is not None:
                        _write_atomically(local / path, value, mode)
            for source in maps:
                data = self._config_map(ray_pod.pod.metadata.namespace, source.name, bool(source.optional))
                items = [(i.key, i.path) for i in source.items] if source.items else [(k, k) for k in data]
                for key, path in items:
                    if key in data:
                        _write_atomically(local / path, data[key], mode)
            local.mkdir(parents=True, exist_ok=True)
            out[mount.mount_path] = local
        return out

    def _config_map(self, namespace: str, name: str, optional: bool) -> dict[str, str]:
        try:
            found = self.core.read_namespaced_config_map(name, namespace)
        except Exception:
            if optional:
                return {}
            raise
        return dict(found.data or {})

    def _secret_items(self, ray_pod: RayPod, name: str, source: Any) -> list[tuple[str, str]]:
        if source.items:
            return [(item.key, item.path) for item in source.items]
        try:
            secret = self.core.read_namespaced_secret(name, ray_pod.pod.metadata.namespace)
        except Exception:
            return []
        return [(key, key) for key in secret.data or {}]

    def _secret(self, namespace: str, name: str, key: str, optional: bool) -> str | None:
        import base64

        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except Exception:
            if optional:
                return None
            raise
        data = (secret.data or {}).get(key)
        if data is None and not optional:
            raise RuntimeError(f"secret {namespace}/{name} has no key {key}")
        return None if data is None else base64.b64decode(data).decode()

    def _command(self, ray_pod: RayPod, container: Any, env: dict[str, str]) -> list[str]:
        argv = [_expand(part, env) for part in [*(container.command or []), *(container.args or [])]]
        if not argv:
            raise RuntimeError(
                f"container {container.name} has no command: the serving image's entrypoint is not modelled"
            )
        argv = [self.resolver.rewrite(part) for part in argv]
        return [re.sub(r"\bray start\b", f"ray start --node-ip-address={ray_pod.ip}", part) for part in argv]

    def _start(self, ray_pod: RayPod, container: Any, log_path: Path) -> subprocess.Popen[bytes]:
        env = self._environment(ray_pod, container)
        argv = self._command(ray_pod, container, env)
        log.info("pod %s (%s) container %s: %s", ray_pod.key, ray_pod.ip, container.name, shlex.join(argv))
        with log_path.open("ab") as out:
            return subprocess.Popen(
                argv,
                cwd=ray_pod.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # --- readiness ---------------------------------------------------------------------------------------

    def _probe(self, ray_pod: RayPod, probe: Any) -> bool:
        container = ray_pod.ray_container
        timeout = probe.timeout_seconds or 1
        if probe.http_get is not None:
            port = probe.http_get.port
            if isinstance(port, str) and not port.isdigit():
                port = next(p.container_port for p in container.ports or [] if p.name == port)
            url = f"http://{probe.http_get.host or ray_pod.ip}:{port}{probe.http_get.path or '/'}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return bool(200 <= response.status < 400)
            except (urllib.error.URLError, OSError, ValueError):
                return False
        action = getattr(probe, "_exec", None)  # the client names the field `_exec` (exec is a keyword)
        if action is not None:
            env = self._environment(ray_pod, container)
            try:
                done = subprocess.run(
                    action.command,
                    env=env,
                    cwd=ray_pod.root,
                    capture_output=True,
                    timeout=timeout + 5,
                    check=False,
                )
            except (subprocess.TimeoutExpired, OSError):
                return False
            return done.returncode == 0
        return True

    def _probe_until_exit(self, ray_pod: RayPod) -> None:
        """Run the readiness probe on its period while the container runs; report Ready changes."""
        assert ray_pod.process is not None
        probe = ray_pod.ray_container.readiness_probe
        started = time.monotonic()
        successes = failures = 0
        while ray_pod.process.poll() is None and not ray_pod.stopping.is_set():
            period = (probe.period_seconds or 10) if probe else 1
            if probe is None:
                ok = True
            elif time.monotonic() - started < (probe.initial_delay_seconds or 0) and not ray_pod.ready:
                ok = False
            else:
                ok = self._probe(ray_pod, probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            ready = ray_pod.ready
            if not ready and ok and successes >= ((probe.success_threshold or 1) if probe else 1):
                ready = True
            elif ready and not ok and failures >= ((probe.failure_threshold or 3) if probe else 1):
                ready = False
            if ready != ray_pod.ready:
                ray_pod.ready = ready
                log.info("pod %s is %s", ray_pod.key, "ready" if ready else "not ready")
                self._report(ray_pod, phase="Running")
            # Not ready yet: look again soon (a kubelet probes on its period; a second is kinder to tests).
            self._wait_for_exit(ray_pod, period if ray_pod.ready else min(period, 1))

    @staticmethod
    def _wait_for_exit(ray_pod: RayPod, seconds: float) -> None:
        """Sleep until the next probe, waking at once when the container exits (a kubelet's PLEG relists
        every second; waiting out a probe period would hide a crash for up to 10 s)."""
        assert ray_pod.process is not None
        deadline = time.monotonic() + seconds
        while not ray_pod.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                ray_pod.process.wait(timeout=min(left, 0.5))
                return
            except subprocess.TimeoutExpired:
                continue

    # --- status ------------------------------------------------------------------------------------------

    def _report(
        self,
        ray_pod: RayPod,
        *,
        phase: str,
        initialized: bool = True,
        exit_code: int | None = None,
        reason: str = "",
    ) -> None:
        pod = ray_pod.pod
        running = phase == "Running"
        ready = running and ray_pod.ready
        stamp = now()

        def condition(kind: str, status: bool) -> dict[str, str]:
            return {"type": kind, "status": "True" if status else "False", "lastTransitionTime": stamp}

        statuses = []
        for index, container in enumerate(pod.spec.containers):
            if index != 0:
                state: dict[str, Any] = {"waiting": {"reason": "NotRunByTestRunner"}}
            elif exit_code is not None:
                state = {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else reason or "Error",
                        "startedAt": ray_pod.started_at,
                        "finishedAt": stamp,
                    }
                }
            elif running:
                state = {"running": {"startedAt": ray_pod.started_at}}
            else:
                state = {"waiting": {"reason": "PodInitializing"}}
            statuses.append(
                {
                    "name": container.name,
                    "image": container.image or "",
                    "imageID": "",
                    "ready": bool(index == 0 and ready),
                    "restartCount": 0,
                    "started": bool(index == 0 and running),
                    "state": state,
                }
            )
        body = {
            "status": {
                "phase": phase,
                "hostIP": NODE_IP,
                "hostIPs": [{"ip": NODE_IP}],
                "podIP": ray_pod.ip,
                "podIPs": [{"ip": ray_pod.ip}],
                "startTime": ray_pod.started_at,
                "conditions": [
                    condition("PodScheduled", True),
                    condition("Initialized", initialized),
                    condition("ContainersReady", ready),
                    condition("Ready", ready),
                ],
                "containerStatuses": statuses,
            }
        }
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, body)
        except Exception as error:
            if getattr(error, "status", None) != 404:  # a pod deleted meanwhile needs no status
                log.warning("status of pod %s: %s", ray_pod.key, error)

    # --- stopping ----------------------------------------------------------------------------------------

    def kill_processes(self, ray_pod: RayPod) -> None:
        """Every process of the pod: its process group and anything that carries its marker."""
        marker = f"{POD_MARKER}={ray_pod.key}/{ray_pod.pod.metadata.uid}".encode()
        if ray_pod.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(ray_pod.process.pid, signal.SIGKILL)
        sweep(marker)
        if ray_pod.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                ray_pod.process.wait(timeout=10)

    def stop_pod(self, ray_pod: RayPod) -> None:
        ray_pod.stopping.set()
        self.kill_processes(ray_pod)
        with self.lock:
            self.pods.pop(ray_pod.pod.metadata.uid, None)
            self.addresses.give_back(ray_pod.ip)

    def finish_delete(self, pod: Any, known: RayPod | None) -> None:
        """A kubelet's part of a graceful delete: stop the containers, then remove the pod for good."""
        if known is not None:
            self.stop_pod(known)
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
        for ray_pod in pods:
            self.stop_pod(ray_pod)
        sweep(f"{RUNNER_MARKER}={self.runner_id}".encode())


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


def _write_atomically(path: Path, value: str, mode: int | None = None) -> None:
    """A Secret or ConfigMap volume's file, replaced whole as a kubelet's atomic writer does: the environment
    is resolved again for every exec probe, and a reader must never see the file empty mid-write (the serving
    app's key reload would refuse every request until its next read)."""
    if path.exists() and path.read_text() == value:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(value)
    if mode is not None:
        staged.chmod(mode)
    os.replace(staged, path)


def pods_tmp(runner_id: str) -> Path:
    """Where the runner's pods keep Ray's temp dirs: short (Ray's socket paths must fit AF_UNIX's 107 bytes),
    one per runner, removed when the runner or its control plane stops."""
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
    parser.add_argument("--namespace-selector", help="run pods only in namespaces with these labels")
    parser.add_argument("--runner-id", required=True, help="marks every pod process, for the final sweep")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from kubernetes import client, config

    podnet.ensure_routes()
    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    runner = PodRunner(
        client.CoreV1Api(api), client.DiscoveryV1Api(api), args.state, args.namespace_selector, args.runner_id
    )

    def on_signal(_signum: int, _frame: Any) -> None:
        runner.stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = asyncio.new_event_loop()
    proxy = loop.run_until_complete(serve_proxy(runner.resolver, args.proxy_port))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    watcher = threading.Thread(target=runner.run, daemon=True)
    watcher.start()
    print(json.dumps({"ready": True, "proxy": f"http://127.0.0.1:{args.proxy_port}"}), flush=True)
    runner.stopped.wait()
    runner.stop()
    loop.call_soon_threadsafe(proxy.close)
    shutil.rmtree(runner.tmp, ignore_errors=True)
    shutil.rmtree(args.state / "vllm-cache", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
