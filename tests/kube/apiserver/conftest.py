"""Fixtures: one emulated API server per module, and a kubectl runner bound to it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.kube.apiserver import ApiServer, running_apiserver

KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def apiserver() -> Iterator[ApiServer]:
    with running_apiserver() as server:
        yield server


@pytest.fixture
def kubectl(apiserver: ApiServer) -> Kubectl:
    def run(
        *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig_path)}
        result = subprocess.run(
            [str(KUBECTL), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run
