"""The operator installed the way a platform team installs it: `helm install` of charts/modelfleet, with
the real Helm built from its Go module. The pod runner then runs the chart's Deployment like any pod, from
an environment built like the operator image (images.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.cluster import binaries, images

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelfleet"
RELEASE, NAMESPACE = "modelfleet", "modelfleet-system"
READY_TIMEOUT_S = 300


def helm(kubeconfig: Path, *args: str, timeout_s: float = 300) -> str:
    from tests.cluster.controlplane import run_tool

    argv = [str(binaries.ensure("helm", log=False)), f"--kubeconfig={kubeconfig}", *args]
    return run_tool(argv, timeout_s=timeout_s)


def _kubectl(kubeconfig: Path, *args: str, timeout_s: float = 60) -> str:
    from tests.cluster.controlplane import kubectl_path, run_tool

    return run_tool([kubectl_path(), f"--kubeconfig={kubeconfig}", *args], timeout_s=timeout_s)


def install_operator(
    kubeconfig: Path,
    *,
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    namespace_labels: dict[str, str] | None = None,
    values: tuple[str, ...] = (),
    log: bool = True,
) -> str:
    """`helm install` the chart into `namespace` (made first, with `namespace_labels`) and wait until the
    operator's Deployment is available; the Deployment's name."""
    started = time.monotonic()
    images.operator_environment(log=log)  # what the pod runner runs the operator image from, built up front
    _kubectl(kubeconfig, "create", "namespace", namespace)
    for key, value in (namespace_labels or {}).items():
        _kubectl(kubeconfig, "label", "namespace", namespace, f"{key}={value}")
    helm(kubeconfig, "install", release, str(CHART), "--namespace", namespace, *values)
    deployment = f"{release}-operator"
    _kubectl(
        kubeconfig,
        "rollout",
        "status",
        f"deployment/{deployment}",
        "-n",
        namespace,
        f"--timeout={READY_TIMEOUT_S}s",
        timeout_s=READY_TIMEOUT_S + 30,
    )
    if log:
        took = time.monotonic() - started
        print(f"[cluster] operator installed with the chart and available in {took:.1f}s", file=sys.stderr)
    return deployment
