"""Options and fixtures shared by every test folder."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import ControlPlane, running

# `make test-cluster`: the kube tests use the cluster in $KUBECONFIG instead of the local control plane.
ON_CLUSTER = os.environ.get("MODELFLEET_TEST_CLUSTER") == "1"
# The pod runner runs KubeRay's pods only in namespaces with this label: the e2e tests' (tests/kube keep
# theirs Pending, as on a cluster with no node).
E2E_NAMESPACES = "modelfleet.dev/e2e=run"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden RayServices in tests/unit/golden/ instead of comparing (review the diff)",
    )


# Seconds spent in each tier (setup, call and teardown of its tests), printed at the end of the run.
_TIER_SECONDS: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    folder, _, rest = report.nodeid.partition("/")
    tier = f"{folder}/{rest.split('/', 1)[0]}" if folder == "tests" and "/" in rest else folder
    _TIER_SECONDS[tier] += report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIER_SECONDS:
        terminalreporter.section("time per tier")
        for tier, seconds in sorted(_TIER_SECONDS.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{seconds:7.0f} s  {seconds / 60:5.1f} min  {tier}")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane | None]:
    """The real local control plane (etcd, kube-apiserver, kube-controller-manager, KubeRay), one for the
    whole run; None under `make test-cluster`, where the cluster in $KUBECONFIG stands in."""
    if ON_CLUSTER:
        if not os.environ.get("KUBECONFIG"):
            pytest.skip("make test-cluster needs KUBECONFIG pointing at a cluster with KubeRay installed")
        yield None
        return
    with running(
        tmp_path_factory.mktemp("control-plane"), pods=pod_network_available(), pod_namespaces=E2E_NAMESPACES
    ) as plane:
        yield plane


def pod_network_available() -> bool:
    """The Ray pod runner can give pods addresses here (a private network namespace: `make test`)."""
    from tests.cluster.podnet import PodNetworkUnavailable, ensure_routes

    try:
        ensure_routes()
    except PodNetworkUnavailable:
        return False
    return True


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane | None) -> Path:
    return control_plane.kubeconfig if control_plane is not None else Path(os.environ["KUBECONFIG"])
