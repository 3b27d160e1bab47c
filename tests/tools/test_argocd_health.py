"""Argo CD health checks (integrations/argocd/resource_customizations/): run by gopher-lua, the interpreter
Argo CD embeds, with the libraries Argo CD opens for an argocd-cm script (tests/cluster/go/argocd-lua).

Each check's `health_test.yaml` is in the layout Argo CD uses upstream; on top of it, the ModelFleet check
is run on statuses written by the operator's own status function, so Argo CD can never show Healthy for a
fleet that `kubectl get modelfleets` does not show Ready.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.api.problems import Problem
from modelfleet.status import fleet_status, status_document
from tests.cluster import binaries

REPO = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = REPO / "integrations" / "argocd" / "resource_customizations"
CHECKS = sorted(p.parent for p in CUSTOMIZATIONS.glob("*/*/health.lua"))
VALID = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
FLEET_CHECK = CUSTOMIZATIONS / "modelfleet.dev" / "ModelFleet"
# What Argo CD must show for each phase of the fleet.
PHASE_HEALTH = {
    "Pending": "Progressing",
    "Deploying": "Progressing",
    "Upgrading": "Progressing",
    "Ready": "Healthy",
    "Degraded": "Degraded",
    "Failed": "Degraded",
    "Invalid": "Degraded",
}


@pytest.fixture(scope="module")
def lua() -> Path:
    return binaries.ensure("argocd-lua", log=False)


def health(lua: Path, script: Path, objects: list[Path]) -> list[dict[str, str]]:
    done = subprocess.run(
        [str(lua), str(script), *map(str, objects)], capture_output=True, text=True, check=True, timeout=60
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_checks_are_where_argo_cd_looks_for_them() -> None:
    assert [c.relative_to(CUSTOMIZATIONS).as_posix() for c in CHECKS] == [
        "modelfleet.dev/ModelFleet",
        "ray.io/RayService",
    ]
    for check in CHECKS:
        group, kind = check.relative_to(CUSTOMIZATIONS).parts
        for path in (check / "testdata").glob("*.yaml"):
            obj = yaml.safe_load(path.read_text())
            assert (obj["apiVersion"].split("/")[0], obj["kind"]) == (group, kind), path


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.relative_to(CUSTOMIZATIONS).as_posix())
def test_health_test_yaml(lua: Path, check: Path) -> None:
    cases = yaml.safe_load((check / "health_test.yaml").read_text())["tests"]
    listed = {case["inputPath"] for case in cases}
    assert listed == {f"testdata/{p.name}" for p in (check / "testdata").glob("*.yaml")}, "every file tested"
    got = health(lua, check / "health.lua", [check / case["inputPath"] for case in cases])
    for case, result in zip(cases, got, strict=True):
        assert "error" not in result, result
        assert result["status"] in VALID
        assert {"status": result["status"], "message": result["message"]} == case["healthStatus"], case


FLEET = {
    "apiVersion": "modelfleet.dev/v1alpha1",
    "kind": "ModelFleet",
    "metadata": {"name": "chat", "namespace": "llm", "generation": 3},
    "spec": {"models": [{"name": "a"}, {"name": "b"}]},
}


def _rayservice(apps: dict[str, str], *, reason: str = "", upgrading: bool = False) -> dict[str, Any]:
    ready = reason == "NonZeroServeEndpoints"
    conditions = [{"type": "Ready", "status": "True" if ready else "False", "reason": reason, "message": "m"}]
    if upgrading:
        conditions.append({"type": "UpgradeInProgress", "status": "True", "reason": "x"})
    statuses = {name: {"status": s, "message": f"{name} {s}"} for name, s in apps.items()}
    return {"status": {"conditions": conditions, "activeServiceStatus": {"applicationStatuses": statuses}}}


RUNNING = {"a": "RUNNING", "b": "RUNNING"}
SLEEPING_DETAILS = {
    "applications": {
        "a": {
            "status": "RUNNING",
            "deployments": {"LLMServer:a": {"target_num_replicas": 1, "replicas": [{}]}},
        },
        "b": {
            "status": "RUNNING",
            "deployments": {"LLMServer:b": {"target_num_replicas": 0, "replicas": []}},
        },
    }
}
SITUATIONS: dict[str, dict[str, Any]] = {
    "no RayService yet": {"rayservice": None},
    "KubeRay initializing": {"rayservice": _rayservice({}, reason="Initializing")},
    "deploying": {"rayservice": _rayservice({"a": "DEPLOYING", "b": "RUNNING"}, reason="Initializing")},
    "serving": {"rayservice": _rayservice(RUNNING, reason="NonZeroServeEndpoints")},
    "one asleep": {
        "rayservice": _rayservice(RUNNING, reason="NonZeroServeEndpoints"),
        "serve_details": SLEEPING_DETAILS,
    },
    "running without serve endpoints": {"rayservice": _rayservice(RUNNING, reason="ZeroServeEndpoints")},
    "one failed": {
        "rayservice": _rayservice({"a": "RUNNING", "b": "DEPLOY_FAILED"}, reason="NonZeroServeEndpoints")
    },
    "all failed": {
        "rayservice": _rayservice({"a": "DEPLOY_FAILED", "b": "DEPLOY_FAILED"}, reason="Initializing")
    },
    "one unhealthy": {
        "rayservice": _rayservice({"a": "RUNNING", "b": "UNHEALTHY"}, reason="NonZeroServeEndpoints")
    },
    "upgrading": {"rayservice": _rayservice(RUNNING, reason="NonZeroServeEndpoints", upgrading=True)},
    "KubeRay refused it": {"rayservice": _rayservice({}, reason="ValidationFailed")},
    "KubeRay gave up": {"rayservice": _rayservice({}, reason="InitializingTimeout")},
    "invalid edit": {
        "rayservice": _rayservice(RUNNING, reason="NonZeroServeEndpoints"),
        "problems": [Problem("spec.models[0].gpus", 2, "too many")],
    },
    "API server refused the RayService": {"rayservice": None, "apply_error": "admission webhook denied it"},
}


def test_argo_cd_agrees_with_the_fleet_phase(lua: Path, tmp_path: Path) -> None:
    """Statuses from the operator's own status function: Healthy exactly when the phase is Ready, and the
    operator's message shown when there is one."""
    phases, paths = [], []
    for index, (situation, inputs) in enumerate(SITUATIONS.items()):
        status = fleet_status(
            FLEET,
            inputs["rayservice"],
            inputs.get("serve_details"),
            problems=inputs.get("problems", ()),
            apply_error=inputs.get("apply_error", ""),
            now="2026-12-01T00:00:00Z",
        )
        path = tmp_path / f"{index}.yaml"
        path.write_text(yaml.safe_dump({**FLEET, "status": status_document(status)}))
        phases.append((situation, status.phase, status.message))
        paths.append(path)
    assert {phase for _, phase, _ in phases} == set(PHASE_HEALTH), "every phase is covered"
    for (situation, phase, message), result in zip(
        phases, health(lua, FLEET_CHECK / "health.lua", paths), strict=True
    ):
        assert result.get("status") == PHASE_HEALTH[phase], (situation, phase, result)
        if message and phase != "Ready":
            assert message in result["message"], (situation, result)


def test_docs_carry_the_same_scripts() -> None:
    """docs/install.md's argocd-cm snippet is the checked-in scripts, indented."""
    docs = (REPO / "docs" / "install.md").read_text()
    for check in CHECKS:
        group, kind = check.relative_to(CUSTOMIZATIONS).parts
        key = f"resource.customizations.health.{group}_{kind}: |"
        found = re.search(rf"^([ ]*){re.escape(key)}\n((?:\1  .*\n|\n)+)", docs, re.M)
        assert found, f"docs/install.md has no {key} block"
        indent = found.group(1) + "  "
        shown = "".join(
            line[len(indent) :] if line.strip() else "\n" for line in found.group(2).splitlines(True)
        )
        assert shown.strip() == (check / "health.lua").read_text().strip(), f"{key} differs from {check}"
