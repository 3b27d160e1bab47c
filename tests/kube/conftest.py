"""The kube test world: the real local control plane (`control_plane` in tests/conftest.py: etcd,
kube-apiserver, kube-controller-manager and the KubeRay operator; or the cluster in $KUBECONFIG for
`make test-cluster`), real `kubectl`, and the operator running as a real process (`modelfleet operator`)
that tests may kill. Each test module gets its own namespace and operator."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.operator_process import OperatorProcess

REPO = pathlib.Path(__file__).parents[2]
BIN = pathlib.Path(sys.executable).parent


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Kube:
    """kubectl bound to one kubeconfig and one test namespace."""

    def __init__(self, kubeconfig: pathlib.Path, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "kubectl"), "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def items(self, kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.run("get", kind, "-o", "json").stdout)["items"]
        return items


class Operator(OperatorProcess):
    """The operator watching the test namespace."""

    def __init__(self, kube: Kube, log: pathlib.Path) -> None:
        super().__init__(kube.kubeconfig, kube.namespace, log)


@pytest.fixture(scope="module")
def kube(kubeconfig: pathlib.Path) -> Iterator[Kube]:
    namespace = f"mf-test-{uuid.uuid4().hex[:6]}"
    admin = Kube(kubeconfig, "default")
    admin.run("apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n")
    yield Kube(kubeconfig, namespace)
    admin.run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    running = Operator(kube, tmp_path_factory.mktemp("operator") / "operator.log")
    running.start()
    yield running
    running.stop()
