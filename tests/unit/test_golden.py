"""Rendered RayServices, NetworkPolicies and HAProxy ConfigMaps compared byte for byte with the reviewed files
in golden/."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.render import render_config_map, render_network_policy, render_yaml
from modelfleet.yamlio import dump
from tests.unit.conftest import CASES, HERE, load_fleet

GOLDEN = HERE / "golden"


def _rendered(case: Path) -> dict[str, str]:
    """golden file name -> the bytes the renderer gives for it."""
    fleet = load_fleet(case)
    files = {f"{case.stem}.rayservice.yaml": render_yaml(fleet)}
    policy = render_network_policy(fleet)
    if policy is not None:
        files[f"{case.stem}.networkpolicy.yaml"] = dump(policy)
    config_map = render_config_map(fleet)
    if config_map is not None:
        files[f"{case.stem}.configmap.yaml"] = dump(config_map)
    return files


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_render_matches_golden(case: Path, request: pytest.FixtureRequest) -> None:
    for name, rendered in _rendered(case).items():
        golden = GOLDEN / name
        if request.config.getoption("--update-golden"):
            GOLDEN.mkdir(exist_ok=True)
            golden.write_text(rendered, encoding="utf-8")
            continue
        assert golden.is_file(), (
            f"no golden file {name} for {case.name}: run `make golden` and review the diff"
        )
        assert rendered == golden.read_text(encoding="utf-8"), (
            f"{case.name} renders differently from {golden.name}; if the change is intended, run "
            "`make golden` and review the diff"
        )


def test_every_case_has_a_golden_file_and_no_orphans() -> None:
    expected = {name for case in CASES for name in _rendered(case)}
    actual = {path.name for path in GOLDEN.glob("*.yaml")}
    assert actual == expected
    assert len(CASES) >= 6
