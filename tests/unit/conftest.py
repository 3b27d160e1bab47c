"""Fixtures of the pure unit tests: the fleets under cases/ and the real KubeRay CRDs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet import yamlio
from modelfleet.api.v1alpha1 import ModelFleet

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.yaml"))
REPO = HERE.parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*/*.yaml"))


def kuberay_dir() -> Path | None:
    """Where the KubeRay v1.7.0 CRDs are: $KUBERAY_CRDS, else ../shared/kuberay beside the checkout."""
    candidates = [os.environ.get("KUBERAY_CRDS"), str(REPO.parent / "shared" / "kuberay")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ray.io_rayservices.yaml").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def rayservice_crd() -> dict[str, Any]:
    directory = kuberay_dir()
    if directory is None:
        pytest.skip(
            "KubeRay RayService CRD not found: set KUBERAY_CRDS to a folder holding ray.io_rayservices.yaml "
            "(KubeRay v1.7.0, ray-operator/config/crd/bases/) or put it in ../shared/kuberay/"
        )
    crd: dict[str, Any] = yaml.safe_load((directory / "ray.io_rayservices.yaml").read_text())
    return crd


def load_fleet(path: Path) -> ModelFleet:
    return ModelFleet.model_validate(yamlio.load_file(path)[0])
