"""Rendered objects checked against the schemas that will judge them: Ray Serve's deploy schema, and our own
generated CRD (structural, committed, CEL rules that hold for every example). KubeRay's CRD judges the
rendered RayService in tests/tools/test_kuberay_schema.py (it comes from the Go module cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet import yamlio
from modelfleet.api.crd import CRD_FILE, build_crd
from modelfleet.render import render
from tests.support.crd_validation import validate
from tests.unit.conftest import CASES, EXAMPLES, REPO, load_fleet

CLUSTER_EXAMPLES = [path for path in EXAMPLES if path.parent.name == "cluster"]
FLEETS = CASES + CLUSTER_EXAMPLES


def ids(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", FLEETS, ids=ids)
def test_serve_config_is_valid_for_ray_serve(path: Path) -> None:
    schema = pytest.importorskip("ray.serve.schema", reason="ray[serve] is not installed")
    text = render(load_fleet(path))["spec"]["serveConfigV2"]
    assert isinstance(text, str), "KubeRay compares serveConfigV2 as a string"
    config = schema.ServeDeploySchema.model_validate(yaml.safe_load(text))
    names = [app.name for app in config.applications]
    assert names[-1] == "fleet"
    assert {app.route_prefix for app in config.applications} == {"/"} | {f"/{n}" for n in names[:-1]}


def test_committed_crd_matches_the_models() -> None:
    committed = (REPO / CRD_FILE).read_text(encoding="utf-8")
    assert committed == yamlio.dump(build_crd()), "crds/ is stale: run `make crds` and commit the result"


def _walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((path, key, value))
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{index}]"))
    return found


def test_crd_schema_is_structural() -> None:
    version = build_crd()["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, key, value in _walk(schema):
        assert key not in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const"), f"{path}.{key}"
        if key == "additionalProperties":
            assert isinstance(value, dict), f"{path}: additionalProperties must be a schema"
        if key == "x-kubernetes-preserve-unknown-fields":
            assert path.endswith("engineArgs"), f"{path}: only engineArgs may keep unknown fields"
        if key == "properties":
            for name, prop in value.items():
                assert "type" in prop, f"{path}.{name}: every property needs a type"
                assert prop.get("description") or path == "", f"{path}.{name}: no description"
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": 0,
        "Phase": 0,
        "Endpoint": 0,
        "Age": 0,
        "RayService": 1,
        "Workers": 1,
        "Message": 1,
    }
    assert build_crd()["spec"]["names"]["shortNames"] == ["mf"]


@pytest.mark.parametrize("path", FLEETS + [p for p in EXAMPLES if p not in CLUSTER_EXAMPLES], ids=ids)
def test_examples_pass_our_crd_schema_and_cel(path: Path) -> None:
    for document in yamlio.load_file(path):
        assert [str(e) for e in validate(build_crd(), "v1alpha1", document)] == []
