"""`python -m tests.cluster`: `build` the control plane's binaries, or `up` (what `make dev-cluster` runs):
start the control plane in the foreground (with the Ray pod runner when it runs in a private network
namespace, as `make dev-cluster` arranges), print `export KUBECONFIG=...` on a line of its own, and stop
everything it started on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
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


def build() -> int:
    started = time.monotonic()
    for name, path in binaries.ensure_all().items():
        print(f"{name}: {path}")
    print(f"control plane binaries ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def _pod_network() -> tuple[bool, str]:
    from tests.cluster.podnet import PodNetworkUnavailable, ensure_routes

    try:
        ensure_routes()
    except PodNetworkUnavailable as error:
        return False, str(error)
    return True, ""


def up(state: Path | None, keep: bool) -> int:
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
        if pods:
            print(
                "The Ray pod runner runs KubeRay's pods as local Ray processes, in this private network "
                "namespace; open a shell in it from another terminal with:\n"
                f"  nsenter --target {os.getpid()} --user --net --preserve-credentials bash\n"
                "and there, so that `modelfleet operator` reads Serve's replicas by Service name:\n"
                f"  export HTTP_PROXY=http://127.0.0.1:{plane.proxy_port} NO_PROXY=127.0.0.1,localhost"
            )
        else:
            print(f"No Ray pod runner ({why_not}): KubeRay's pods stay Pending.")
        helm = binaries.ensure("helm", log=False)
        print(
            f"Helm (built from its Go module) is {helm}; the chart installs with\n"
            f"  {helm} install modelfleet {REPO / 'charts' / 'modelfleet'} "
            "-n modelfleet-system --create-namespace"
        )
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
        plane.stop()
        print("control plane stopped", flush=True)
        if not keep and state is None:
            shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "build", help="build (or find cached) etcd, kube-apiserver, kube-controller-manager, KubeRay"
    )
    run = sub.add_parser("up", help="run the control plane in the foreground")
    run.add_argument("--state", type=Path, help="folder for etcd data, keys and logs (kept)")
    run.add_argument("--keep", action="store_true", help="keep the temporary state folder on exit")
    args = parser.parse_args()
    if args.command == "build":
        return build()
    (REPO / ".modelfleet").mkdir(exist_ok=True)
    return up(args.state, args.keep)


if __name__ == "__main__":
    sys.exit(main())
