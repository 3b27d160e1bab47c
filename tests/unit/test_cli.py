"""The `modelfleet` command as a user runs it: exit codes and one line per problem naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.unit.conftest import HERE, REPO

CLI = [sys.executable, "-m", "modelfleet.cli"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, input=stdin, timeout=60, check=False)


def test_render_prints_what_each_document_owns(tmp_path: Path) -> None:
    two = (
        (HERE / "cases" / "single-model.yaml").read_text()
        + "---\n"
        + (HERE / "cases" / "cpu-only.yaml").read_text()
    )
    (tmp_path / "fleets.yaml").write_text(two)
    result = run("render", str(tmp_path / "fleets.yaml"))
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("RayService", "single"),
        ("NetworkPolicy", "single-ray"),
        ("ConfigMap", "single-haproxy"),  # high-throughput mode (the default): HAProxy's wrapper and routes
        ("RayService", "cpu-fleet"),  # networkPolicy.enabled: false
        ("ConfigMap", "cpu-fleet-haproxy"),
    ]


def test_validate_names_field_value_and_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: modelfleet.dev/v1alpha1\nkind: ModelFleet\nmetadata: {name: bad}\nspec:\n"
        "  models:\n  - {name: a, source: x, replicas: {min: 3, max: 2}}\n  workers: [{name: gpu}]\n"
    )
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{bad}: ModelFleet bad: spec.models[0].replicas.min: 3: min must be less than or equal to max"
    ]


def test_validate_accepts_every_example() -> None:
    for example in sorted((REPO / "examples").glob("*/*.yaml")):
        result = run("validate", str(example))
        assert result.returncode == 0, result.stderr


def test_render_refuses_an_invalid_fleet_and_prints_nothing() -> None:
    result = run(
        "render",
        "-",
        stdin="apiVersion: modelfleet.dev/v1alpha1\nkind: ModelFleet\n"
        "metadata: {name: x}\nspec: {models: []}\n",
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "spec.models" in result.stderr


def test_crd_command_writes_the_committed_crd(tmp_path: Path) -> None:
    out = tmp_path / "crd.yaml"
    assert run("crd", "-o", str(out)).returncode == 0
    assert out.read_text() == (REPO / "crds" / "modelfleets.modelfleet.dev.yaml").read_text()
