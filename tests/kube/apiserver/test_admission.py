"""`Admission` (prepared once, verdicts remembered per field) answers exactly as `crd_validation.validate`."""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.kube.apiserver.admission import Admission
from tests.kube.apiserver.widgets import CRD as WIDGET_CRD
from tests.kube.apiserver.widgets import widget
from tests.support import crd_schema, crd_validation

REPO = pathlib.Path(__file__).parents[3]
FLEET_CRD = yaml.safe_load((REPO / "crds" / "modelfleets.modelfleet.dev.yaml").read_text(encoding="utf-8"))
EXAMPLE = yaml.safe_load(
    (REPO / "examples" / "cluster" / "two-models-one-gpu.yaml").read_text(encoding="utf-8")
)

Doc = dict[str, Any]


def _with_root_rules(*rules: Doc) -> Doc:
    """The widget CRD with rules on the whole object (seen through the paths they read, or whole)."""
    crd = copy.deepcopy(WIDGET_CRD)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = list(rules)
    return crd


ROOTED = _with_root_rules(
    {"rule": "self.metadata.name.startsWith('w')", "messageExpression": "'bad name ' + self.metadata.name"},
    {
        "rule": "!has(oldSelf.spec.color) || self.spec.color == oldSelf.spec.color",
        "message": "color is fixed",
    },
)
WHOLE = _with_root_rules({"rule": "self.size() <= 4", "message": "too many top-level fields"})


def _fleet(change: Callable[[Doc], Any] = lambda _: None) -> Doc:
    doc: Doc = copy.deepcopy(EXAMPLE)
    change(doc)
    return doc


def _model(**fields: Any) -> Callable[[Doc], Any]:
    return lambda doc: doc["spec"]["models"][0].update(fields)


# (id, crd, new object, old object or None)
CASES: list[tuple[str, Doc, Doc, Doc | None]] = [
    ("fleet-valid", FLEET_CRD, _fleet(), None),
    ("fleet-bogus-field-pruned", FLEET_CRD, _fleet(_model(bogus=1)), None),
    ("fleet-name-too-long", FLEET_CRD, _fleet(lambda d: d["metadata"].update(name="a" * 48)), None),
    ("fleet-model-name-reserved", FLEET_CRD, _fleet(_model(name="v1")), None),
    (
        "fleet-schema-and-cel",
        FLEET_CRD,
        _fleet(_model(name="fleet", gpus=-1, replicas={"min": 3, "max": 2})),
        None,
    ),
    ("fleet-kind-wrong", FLEET_CRD, _fleet(lambda d: d.update(kind="Nope")), None),
    ("fleet-spec-missing", FLEET_CRD, _fleet(lambda d: d.pop("spec")), None),
    ("fleet-status-update", FLEET_CRD, _fleet(lambda d: d.update(status={"phase": "Ready"})), _fleet()),
    ("widget-valid", WIDGET_CRD, widget("w", items=[{"name": "a", "replicas": 1}]), None),
    ("widget-defaulted-and-pruned", WIDGET_CRD, widget("w", bogus=1, extra={"kept": {"x": 1}}), None),
    (
        "widget-errors",
        WIDGET_CRD,
        widget("w", size="huge", items=[{"name": "forbidden", "replicas": 9}] * 5),
        None,
    ),
    (
        "widget-transition-refused",
        WIDGET_CRD,
        widget("w", size="large", items=[{"name": "a", "replicas": 1}]),
        widget("w", items=[{"name": "a", "replicas": 1}]),
    ),
    ("widget-transition-allowed", WIDGET_CRD, widget("w", size="large"), widget("w")),
    ("widget-not-an-object", WIDGET_CRD, {**widget("w"), "spec": "oops"}, None),
    ("root-rules-pass", ROOTED, widget("w-1", color="red"), widget("w-1", color="red")),
    ("root-rules-fail", ROOTED, widget("x-1", color="red"), widget("x-1", color="blue")),
    ("root-rules-create", ROOTED, widget("x-1", color="red"), None),
    ("root-rule-reads-all", WHOLE, {**widget("w"), "status": {"phase": "Up"}}, None),
    ("root-rule-reads-all-pass", WHOLE, widget("w"), widget("w")),
]


@pytest.mark.parametrize(("crd", "obj", "old"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_admission_answers_as_crd_validation(crd: Doc, obj: Doc, old: Doc | None) -> None:
    version = crd["spec"]["versions"][0]["name"]
    admission = Admission(crd, version)
    want = crd_validation.validate(crd, version, obj, old)
    for _ in range(2):  # the second time from what it remembered
        pruned, problems = admission.admit(obj, old)
        assert [str(p) for p in problems] == [str(p) for p in want]
        assert problems == want
    schema = crd_schema.version_schema(crd, version)
    expected = crd_schema.apply_defaults(schema, crd_schema.prune(schema, obj)[0])
    assert json.dumps(pruned) == json.dumps(expected)  # the same fields, in the same order
    assert pruned is not obj


def test_remembered_verdicts_follow_the_old_object_for_transition_rules() -> None:
    admission = Admission(WIDGET_CRD, "v1")
    items = [{"name": "a", "replicas": 1}]
    new = widget("w", size="large", items=items)
    assert admission.admit(new, widget("w", size="large", items=items))[1] == []
    refused = admission.admit(new, widget("w", items=items))[1]
    assert [p.message for p in refused] == ["size is immutable once items exist"]
