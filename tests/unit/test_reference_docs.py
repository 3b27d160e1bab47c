"""docs/reference.md is what `make docs` writes from the API models and the operator's constants, and those
constants are the ones the operator writes status and Events with."""

from __future__ import annotations

import typing

from modelfleet.api.v1alpha1 import MODEL_STATES, PHASES, FleetPhase, ModelState
from modelfleet.reconcile import EVENTS
from modelfleet.reference import render_reference
from modelfleet.status import CONDITIONS, fleet_status
from tests.unit.conftest import REPO


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(), "docs/reference.md is stale: run `make docs`, commit the result"


def test_every_phase_and_model_state_is_described() -> None:
    assert list(PHASES) == list(typing.get_args(FleetPhase))
    assert list(MODEL_STATES) == list(typing.get_args(ModelState))


def test_the_conditions_described_are_the_ones_written() -> None:
    fleet = {"metadata": {"name": "chat", "generation": 1}, "spec": {"models": [{"name": "a"}]}}
    assert [c.type for c in fleet_status(fleet, None, now="t").conditions] == list(CONDITIONS)


def test_every_owned_kind_has_its_events_described() -> None:
    """The operator posts `<Kind>Created|Updated|Deleted` for the objects it owns beside the RayService."""
    for kind in ("NetworkPolicy", "ConfigMap"):
        assert {f"{kind}{verb}" for verb in ("Created", "Updated", "Deleted")} <= set(EVENTS)
    assert {kind for kind, _ in EVENTS.values()} == {"Normal", "Warning"}
