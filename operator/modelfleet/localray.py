"""A private local Ray head driven the way KubeRay drives a cluster's: `ray start` bound to 127.0.0.1 with
its own temp dir, and Serve configs PUT to the dashboard's `/api/serve/applications/`.

No Ray import: the head runs as processes started by the `ray` CLI next to this Python, and we talk to
it over HTTP, so `modelfleet` itself stays free of Ray (DESIGN §2).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelfleet_contract.routing import local_wrapper, unified_routing
from modelfleet_contract.wire import HAPROXY_BINARY_ENV, LOOPBACK_ENV

T = TypeVar("T")

# Environment of `ray start`, inherited by every replica and engine: local, offline, quiet.
RAY_ENV = {
    # Ray turns `--node-ip-address=127.0.0.1` into the machine's network address, and then binds its
    # GCS, raylet, workers and metrics on it (or on all interfaces), unless multi-node support is off,
    # as it is on macOS and Windows: then the node's address is 127.0.0.1 and they bind loopback only.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_NO_USAGE_STATS": "1",
    "NO_COLOR": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str) -> bool:
    """`GET url` answers 200 within 5 s."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def wait_for(what: str, probe: Callable[[], T | None], *, timeout_s: float, every_s: float = 0.5) -> T:
    """Poll `probe` until it returns something other than None or False; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(every_s)  # a poll interval under a deadline
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@dataclass
class RayHead:
    """Where a local Ray head lives and how to reach it; saved as JSON so `status`/`down` find it."""

    root: str
    gcs_port: int
    dashboard_port: int
    serve_port: int
    metrics_port: int = 0  # Ray's Prometheus endpoint on this node (0: not known, e.g. `--address`)
    owned: bool = True  # False when `--address` joined someone else's Ray: never stop it

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def metrics_url(self) -> str | None:
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else None

    def request(self, method: str, path: str, body: Any = None, timeout_s: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.dashboard_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout_s) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def deploy(self, serve_config: dict[str, Any], *, timeout_s: float = 120) -> None:
        """PUT a serveConfigV2 document, as KubeRay does on every change (and, like KubeRay, again after a
        5xx: a dashboard that has just started can answer 500 while Serve's controller comes up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.request("PUT", "/api/serve/applications/", serve_config)
                return
            except urllib.error.HTTPError as error:
                if error.code < 500 or time.monotonic() > deadline:
                    detail = error.read().decode(errors="replace").strip()[-500:]
                    reason = f"{error}: {detail}"
                    raise RuntimeError(f"the Ray dashboard refused the Serve config: {reason}") from None
            time.sleep(1)  # a retry interval under the deadline above

    def details(self) -> dict[str, Any]:
        """Serve's `GET /api/serve/applications/` body: per-application status, deployments, replicas."""
        found: dict[str, Any] = self.request("GET", "/api/serve/applications/")
        return found

    def answers_healthz(self) -> bool:
        """The fleet's unified endpoint answers `GET /healthz` (the router's, open without a key)."""
        return http_ok(self.serve_url + "/healthz")

    def reachable(self) -> bool:
        try:
            self.request("GET", "/api/serve/applications/", timeout_s=5)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False
        return True

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RayHead:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def ray_env(root: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment of the head: temp files, caches and the HAProxy files all under `root`."""
    return {
        **os.environ,
        **RAY_ENV,
        "TMPDIR": str(root / "tmp"),
        "VLLM_CACHE_ROOT": str(root / "vllm-cache"),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(root / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(root / "haproxy.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(root / "haproxy"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(root / "haproxy" / "server-state"),
        # Ray's fixed defaults (8404, 9101) would collide between two local heads.
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        **extra,
    }


# The fleet's routes by model for HAProxy (serving_app/haproxy.py), in the head's root: `modelfleet up` writes
# it before each deploy, the HAProxy wrapper reads it each time Ray (re)starts HAProxy.
UNIFIED_ROUTES_FILE = "unified-routes.json"


def haproxy_env(root: Path, *, loopback: bool) -> dict[str, str]:
    """The environment that runs a local head's HAProxy through serving_app/haproxy.py (the wrapper goes in
    `root`): the fleet's endpoint routed by model, and with `loopback` every listener on 127.0.0.1. An HAProxy
    of the user's own (RAY_SERVE_HAPROXY_BINARY_PATH) is the one the wrapper runs; else Ray's."""
    wrapper = root / "haproxy-wrapper"
    script = local_wrapper(
        sys.executable,
        loopback=loopback,
        routes_file=root / UNIFIED_ROUTES_FILE,
        real=os.environ.get(HAPROXY_BINARY_ENV),
    )
    wrapper.write_text(script, encoding="utf-8")
    wrapper.chmod(0o755)
    return {HAPROXY_BINARY_ENV: str(wrapper), **({LOOPBACK_ENV: "1"} if loopback else {})}


def write_unified_routes(head: RayHead, serve_config: dict[str, Any]) -> None:
    """Where this head runs HAProxy through our wrapper, tell it the models it may route by the body."""
    if head.owned and head.root:
        path = Path(head.root) / UNIFIED_ROUTES_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(unified_routing(serve_config).dumps(), encoding="utf-8")
        temporary.replace(path)  # HAProxy may be restarting right now: it reads the old file or the new


def start_head(
    *,
    num_cpus: int,
    serve_port: int,
    extra_env: dict[str, str] | None = None,
    loopback_only: bool = False,
    route_by_model: bool = False,
) -> RayHead:
    """Start a Ray head on 127.0.0.1 with its own temp dir; the caller must `stop_head` it.

    With `loopback_only`, the listeners Ray opens on every interface whatever its settings (replicas' gRPC,
    HAProxy's stats and metrics) are kept on 127.0.0.1 too. With `route_by_model`, HAProxy routes the fleet's
    endpoint by the body's model as `write_unified_routes` says (serving_app/haproxy.py)."""
    # Unix socket paths are limited to ~107 bytes: keep the root short.
    root = Path(tempfile.mkdtemp(prefix="mf-", dir="/tmp"))
    (root / "tmp").mkdir()
    wrapped = haproxy_env(root, loopback=loopback_only) if loopback_only or route_by_model else {}
    extra_env = {**wrapped, **(extra_env or {})}
    head = RayHead(
        root=str(root),
        gcs_port=free_port(),
        dashboard_port=free_port(),
        serve_port=serve_port,
        metrics_port=free_port(),
    )
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={head.gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={head.dashboard_port}",
        f"--metrics-export-port={head.metrics_port}",
        f"--temp-dir={root / 'ray'}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--include-dashboard=true",
        # Ray cannot be told not to start its Client server; give it a free port, not the fixed 10001.
        f"--ray-client-server-port={free_port()}",
        "--disable-usage-stats",
    ]
    try:
        result = subprocess.run(
            command,
            env=ray_env(root, extra_env),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ray start failed: {result.stderr.strip()[-2000:]}")
        wait_for("the Ray dashboard", head.reachable, timeout_s=90)
    except BaseException:
        stop_head(head)  # half-started (or interrupted): leave no processes or files behind
        raise
    return head


def head_processes(head: RayHead) -> dict[int, Any]:
    """The processes of this head (psutil.Process by pid): those whose command line or TMPDIR names its
    temp root, and their descendants."""
    import psutil

    owned: dict[int, Any] = {}
    for proc in psutil.process_iter(["cmdline", "environ"]):
        # Most name the root on their command line; all inherit `ray start`'s TMPDIR (ray_env), which
        # is how the Ray Client server, daemonized with neither, is found.
        tmpdir = (proc.info["environ"] or {}).get("TMPDIR", "")
        if head.root in " ".join(proc.info["cmdline"] or []) or tmpdir.startswith(head.root):
            owned[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                owned.update({child.pid: child for child in proc.children(recursive=True)})
    return owned


def stop_head(head: RayHead, *, grace_s: float = 10) -> int:
    """Stop this head's processes, by pid, and remove its files; returns how many processes ended.

    `ray stop` kills every Ray process on the machine by name; another fleet or another user's Ray may be
    running, so only processes whose command line or TMPDIR names our temp root, and their descendants,
    are ended.
    """
    if not head.owned:
        return 0
    import psutil

    owned = head_processes(head)
    for proc in owned.values():
        with contextlib.suppress(psutil.Error):  # it may have exited meanwhile
            proc.terminate()
    _, alive = psutil.wait_procs(list(owned.values()), timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    shutil.rmtree(head.root, ignore_errors=True)
    return len(owned)
