"""Every rendered RayService is valid for KubeRay's own CRD (the one of the KubeRay module the test control
plane runs, from the Go module cache): no field the API server would refuse or silently drop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.render import render
from tests.support import crd_schema
from tests.support.crd_validation import validate
from tests.support.kuberay import kuberay_crd_dir
from tests.unit.conftest import CASES, EXAMPLES, load_fleet

FLEETS = CASES + [path for path in EXAMPLES if path.parent.name == "cluster"]


def ids(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.fixture(scope="module")
def rayservice_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((kuberay_crd_dir() / "ray.io_rayservices.yaml").read_text())
    return crd


@pytest.mark.parametrize("path", FLEETS, ids=ids)
def test_rendered_rayservice_is_valid_for_kuberay(path: Path, rayservice_crd: dict[str, Any]) -> None:
    rayservice = render(load_fleet(path))
    schema = crd_schema.version_schema(rayservice_crd, "v1")
    _, dropped = crd_schema.prune(schema, rayservice)
    assert dropped == [], f"the API server would silently drop these fields: {dropped}"
    errors = validate(rayservice_crd, "v1", rayservice)
    assert [str(error) for error in errors] == []
