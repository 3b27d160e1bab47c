"""The Events the operator posts when status changes (pure: previous status, new status -> events).
The end-to-end tests see FleetReady from a real cluster; a model failing is shaped here."""

from __future__ import annotations

from modelfleet.reconcile import _already_invalid_for, _transition_events


def _status(phase: str, models: dict[str, str], message: str = "") -> dict[str, object]:
    return {
        "phase": phase,
        "ready": f"{sum(s in ('Ready', 'ScaledToZero') for s in models.values())}/{len(models)}",
        "endpoint": "http://chat-serve-svc.llm.svc:8000/v1",
        "models": [
            {"name": n, "state": s, "message": message if s == "Failed" else ""} for n, s in models.items()
        ],
    }


def test_a_model_that_fails_gets_one_warning() -> None:
    before = _status("Ready", {"a": "Ready", "b": "Ready"})
    after = _status("Degraded", {"a": "Ready", "b": "Failed"}, "OSError: org/b is not a local folder")
    assert _transition_events(before, after) == [
        ("Warning", "ModelFailed", "b: OSError: org/b is not a local folder")
    ]
    assert _transition_events(after, after) == [], "still failed: no second Event"


def test_the_fleet_becoming_ready_is_announced_once() -> None:
    before = _status("Deploying", {"a": "Deploying", "b": "ScaledToZero"})
    after = _status("Ready", {"a": "Ready", "b": "ScaledToZero"})
    assert _transition_events(before, after) == [
        ("Normal", "FleetReady", "2/2 models ready at http://chat-serve-svc.llm.svc:8000/v1")
    ]
    assert _transition_events(after, after) == []


def test_an_invalid_spec_is_reported_once_per_reason() -> None:
    invalid = {
        "phase": "Invalid",
        "conditions": [
            {"type": "SpecValid", "status": "False", "message": "spec.models[0].gpus: 2: too many"}
        ],
    }
    assert _already_invalid_for(invalid, "spec.models[0].gpus: 2: too many")
    assert not _already_invalid_for(invalid, "spec.models[1].gpus: 3: too many")
