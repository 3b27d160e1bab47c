"""`python -m tests.cluster`: `build` the control plane's binaries; `up` (what `make dev-cluster` runs):
start the control plane in the foreground with the pod runner (when it runs in a private network namespace,
as `make dev-cluster` arranges) and the operator installed with its Helm chart, print `export KUBECONFIG=...`
on a line of its own, and stop everything it started on Ctrl-C or SIGTERM; `shell` (what `make dev-shell`
runs): a shell inside the running cluster's network, with KUBECONFIG set and Service names resolved by the
cluster's DNS."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from tests.cluster import binaries

REPO = Path(__file__).resolve().parents[2]
# Where a running `make dev-cluster` says how to reach it (for `make dev-shell`).
DEV_STATE = REPO / ".modelfleet" / "dev-cluster.json"


def build() -> int:
    """The Go binaries, the operator image's environment and the serving image's resolution (pip needs PyPI,
    which the private network namespace the tests run in cannot reach)."""
    from tests.cluster import images

    started = time.monotonic()
    for name, path in binaries.ensure_all().items():
        print(f"{name}: {path}")
    print(f"control plane binaries ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(f"operator image environment: {images.operator_environment()}")
    print(f"serving image resolved: {len(images.serving_image_distributions())} distributions")
    return 0


def _pod_network() -> tuple[bool, str]:
    from tests.cluster.podnet import PodNetworkUnavailable, ensure_routes

    try:
        ensure_routes()
    except PodNetworkUnavailable as error:
        return False, str(error)
    return True, ""


def up(state: Path | None, keep: bool, operator: bool) -> int:
    from tests.cluster.chart import NAMESPACE, install_operator
    from tests.cluster.controlplane import ControlPlane  # needs the venv; `build` runs on any Python 3.11

    root = state or Path(tempfile.mkdtemp(prefix="dev-cluster-", dir=REPO / ".modelfleet"))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    pods, why_not = _pod_network()
    plane = ControlPlane(root, pods=pods)
    started = time.monotonic()
    plane.start()
    try:
        print(f"control plane up in {time.monotonic() - started:.1f}s: {plane.url} (logs in {plane.logs})")
        print("KubeRay operator and the ModelFleet CRD installed.")
        if pods and operator:
            install_operator(plane.kubeconfig)
            print(f"ModelFleet operator installed with charts/modelfleet in namespace {NAMESPACE}.")
        elif pods:
            print("No ModelFleet operator (--no-operator): run `modelfleet operator` from `make dev-shell`.")
        if pods:
            DEV_STATE.write_text(json.dumps({"pid": os.getpid(), "kubeconfig": str(plane.kubeconfig)}))
            print(
                "Pods run here as local processes, in this private network namespace (logs under "
                f"{root / 'pods'}). Open a shell in it, with KUBECONFIG set and Service names resolved:\n"
                "  make dev-shell\n"
                "or by hand (no cluster DNS there):\n"
                f"  nsenter --target {os.getpid()} --user --net --preserve-credentials bash"
            )
        else:
            print(f"No pod runner ({why_not}): pods stay Pending, and the operator is not installed.")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        components = [plane.etcd, plane.apiserver, plane.controller_manager, plane.kuberay]
        while not stop.wait(1):
            for component in [*components, *([plane.pod_runner] if pods else [])]:
                if not component.running():
                    print(f"{component.name} exited; see {component.log}", file=sys.stderr)
                    return 1
        return 0
    finally:
        DEV_STATE.unlink(missing_ok=True)
        plane.stop()
        print("control plane stopped", flush=True)
        if not keep and state is None:
            shutil.rmtree(root, ignore_errors=True)


def shell(command: list[str]) -> int:
    """A shell (or `command`) in the running dev cluster's network namespace, with a mount namespace whose
    /etc/resolv.conf names the cluster's DNS: kubectl, curl and the openai SDK reach pods and Services by
    name, as from a pod of namespace `default`."""
    from tests.cluster.clusterdns import resolv_conf
    from tests.cluster.podnet import NODE_IP

    if not DEV_STATE.exists():
        print("no dev cluster is running here: start one with `make dev-cluster`", file=sys.stderr)
        return 2
    found = json.loads(DEV_STATE.read_text())
    scratch = Path(tempfile.mkdtemp(prefix="dev-shell-", dir=REPO / ".modelfleet"))
    spec = {
        "hostname": None,
        "scratch": str(scratch),
        "files": {"/etc/resolv.conf": resolv_conf("default", NODE_IP)},
        "workdir": os.getcwd(),
        "argv": command or [os.environ.get("SHELL", "bash")],
    }
    (scratch / "spec.json").write_text(json.dumps(spec))
    os.environ.update(
        KUBECONFIG=found["kubeconfig"],
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        MODELFLEET_DEV_SHELL="1",
    )
    sandbox = Path(__file__).with_name("sandbox.py")
    nsenter = ["nsenter", f"--target={found['pid']}", "--user", "--net", "--preserve-credentials"]
    os.execvp(
        "nsenter", [*nsenter, "--", sys.executable, "-I", "-S", str(sandbox), str(scratch / "spec.json")]
    )
    return 0  # not reached


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "build", help="build (or find cached) etcd, kube-apiserver, kube-controller-manager, KubeRay, Helm"
    )
    run = sub.add_parser("up", help="run the control plane in the foreground")
    run.add_argument("--state", type=Path, help="folder for etcd data, keys and logs (kept)")
    run.add_argument("--keep", action="store_true", help="keep the temporary state folder on exit")
    run.add_argument(
        "--no-operator",
        action="store_true",
        help="leave the operator out (run `modelfleet operator` yourself, from `make dev-shell`)",
    )
    enter = sub.add_parser("shell", help="a shell in the running dev cluster's network (make dev-shell)")
    enter.add_argument("argv", nargs="*", help="a command to run instead of a shell")
    args = parser.parse_args()
    if args.command == "build":
        return build()
    (REPO / ".modelfleet").mkdir(exist_ok=True)
    if args.command == "shell":
        return shell(args.argv)
    return up(args.state, args.keep, operator=not args.no_operator)


if __name__ == "__main__":
    sys.exit(main())
