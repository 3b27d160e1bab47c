"""Rendered RayServices compared byte for byte with the reviewed golden files in golden/."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.render import render_yaml
from tests.unit.conftest import CASES, HERE, load_fleet

GOLDEN = HERE / "golden"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_render_matches_golden(case: Path, request: pytest.FixtureRequest) -> None:
    rendered = render_yaml(load_fleet(case))
    golden = GOLDEN / f"{case.stem}.rayservice.yaml"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
        return
    assert golden.is_file(), f"no golden file for {case.name}: run `make golden` and review the diff"
    assert rendered == golden.read_text(encoding="utf-8"), (
        f"{case.name} renders differently from {golden.name}; if the change is intended, run `make golden` "
        "and review the diff"
    )


def test_every_case_has_a_golden_file_and_no_orphans() -> None:
    expected = {f"{case.stem}.rayservice.yaml" for case in CASES}
    actual = {path.name for path in GOLDEN.glob("*.yaml")}
    assert actual == expected
    assert len(CASES) >= 6
