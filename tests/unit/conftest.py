"""Fixtures of the pure unit tests: the fleets under cases/ and the real KubeRay CRDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet import yamlio
from modelfleet.api.v1alpha1 import ModelFleet
from tests.support.kuberay import kuberay_crd_dir

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.yaml"))
REPO = HERE.parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*/*.yaml"))


@pytest.fixture(scope="session")
def rayservice_crd() -> dict[str, Any]:
    """KubeRay's RayService CRD from the KubeRay module the test control plane runs (via the Go module
    cache, downloaded on first use): the schema our rendered RayServices must satisfy."""
    crd: dict[str, Any] = yaml.safe_load((kuberay_crd_dir() / "ray.io_rayservices.yaml").read_text())
    return crd


def load_fleet(path: Path) -> ModelFleet:
    return ModelFleet.model_validate(yamlio.load_file(path)[0])
