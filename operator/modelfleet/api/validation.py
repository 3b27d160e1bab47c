"""The three validation layers of a fleet, run offline in one call: schema, CEL, semantic checks.

1. schema: the pydantic models (the same constraints the CRD's structural schema carries);
2. CEL: the CRD's own `x-kubernetes-validations`, evaluated with cel-python;
3. semantic: `modelfleet.api.semantic`, what CEL cannot express.
A later layer runs only when the earlier ones pass, as in the API server and the operator.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from modelfleet.api import cel, semantic
from modelfleet.api.crd import build_crd
from modelfleet.api.problems import Problem, join_path
from modelfleet.api.v1alpha1 import QUANTITY, ModelFleet
from modelfleet_contract.wire import DNS_LABEL

_FRIENDLY_PATTERNS = {
    DNS_LABEL: "must be a DNS label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    QUANTITY: "must be a Kubernetes quantity such as 8Gi, 512Mi or 2",
    "^/": "must be an absolute path",
}


@cache
def _root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _rule(error: Any) -> str:
    pattern = (error.get("ctx") or {}).get("pattern")
    if error["type"] == "string_pattern_mismatch" and pattern in _FRIENDLY_PATTERNS:
        return _FRIENDLY_PATTERNS[pattern]
    if error["type"] == "extra_forbidden":
        return "unknown field (check its spelling and the ModelFleet reference)"
    if error["type"] == "missing":
        return "required field is missing"
    return str(error["msg"])


def schema_problems(error: ValidationError) -> list[Problem]:
    """pydantic errors as Problems with kube-style field paths (spec.models[1].replicas.min)."""
    problems = []
    for item in error.errors(include_url=False):
        path = ""
        for part in item["loc"]:
            path = join_path(path, part)
        value = None if item["type"] == "missing" else item.get("input")
        problems.append(Problem(path or "(document)", value, _rule(item)))
    return problems


def validate_fleet(document: dict[str, Any]) -> tuple[ModelFleet | None, list[Problem]]:
    """Parse and check one ModelFleet document; the fleet is None when any layer found a problem."""
    try:
        fleet = ModelFleet.model_validate(document)
    except ValidationError as error:
        return None, schema_problems(error)
    wire = fleet.model_dump(by_alias=True, exclude_none=True, mode="json")
    problems = cel.evaluate(_root_schema(), wire)
    if not problems:
        problems = semantic.check(fleet.spec)
    return (None, problems) if problems else (fleet, [])
