"""Fixtures of the pure unit tests: the fleets under cases/ and the examples. No Go, no network, no cache:
what needs tools built from Go modules (Helm, Argo CD's Lua, KubeRay's CRDs) is in tests/tools."""

from __future__ import annotations

from pathlib import Path

from modelfleet import yamlio
from modelfleet.api.v1alpha1 import ModelFleet

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.yaml"))
REPO = HERE.parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*/*.yaml"))


def load_fleet(path: Path) -> ModelFleet:
    return ModelFleet.model_validate(yamlio.load_file(path)[0])
