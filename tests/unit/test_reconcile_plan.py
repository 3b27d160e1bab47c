"""The reconciler's plan (validate + render) is memoized on the spec, never on bookkeeping metadata."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelfleet import reconcile, yamlio
from modelfleet.reconcile import Reconciler
from modelfleet.render import render
from tests.unit.conftest import HERE

FLEET = HERE / "cases" / "two-models-one-gpu.yaml"


def _fleet(**metadata: Any) -> dict[str, Any]:
    fleet: dict[str, Any] = yamlio.load_file(FLEET)[0]
    fleet["metadata"].update(metadata)
    return fleet


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the fleets rendered, in order."""
    seen: list[str] = []

    def counting(fleet: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(fleet.metadata.name)
        return render(fleet, **kwargs)

    monkeypatch.setattr(reconcile, "render", counting)
    return seen


def test_a_status_event_reuses_the_render(renders: list[str]) -> None:
    reconciler = Reconciler(api=None)  # type: ignore[arg-type]  # plan() makes no API calls
    first, problems = reconciler.plan(_fleet(resourceVersion="1", annotations={"kopf": "a"}))
    again, _ = reconciler.plan(_fleet(resourceVersion="7", annotations={"kopf": "b"}, generation=1))
    assert problems == [] and first is not None
    assert first == again and len(renders) == 1
    # Each caller owns its copy: adopting (adding ownerReferences) one must not leak into the next.
    assert first is not again
    first["metadata"]["ownerReferences"] = [{"uid": "x"}]
    assert "ownerReferences" not in (reconciler.plan(_fleet())[0] or {})["metadata"]


def test_a_spec_change_renders_again(renders: list[str]) -> None:
    reconciler = Reconciler(api=None)  # type: ignore[arg-type]
    before, _ = reconciler.plan(_fleet())
    changed = _fleet()
    changed["spec"]["models"][0]["replicas"] = {"min": 0, "max": 3}
    after, _ = reconciler.plan(changed)
    assert len(renders) == 2 and before != after


def test_an_invalid_spec_is_remembered_with_its_problems(renders: list[str]) -> None:
    reconciler = Reconciler(api=None)  # type: ignore[arg-type]
    bad = _fleet()
    bad["spec"]["models"][0]["replicas"] = {"min": 3, "max": 1}
    for _ in range(2):
        desired, problems = reconciler.plan(copy.deepcopy(bad))
        assert desired is None
        assert [p.field for p in problems] == ["spec.models[0].replicas.min"]
    assert renders == []
