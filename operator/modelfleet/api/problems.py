"""A validation problem: the field path, the offending value and the rule it breaks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_MAX_VALUE_CHARS = 80


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a fleet, phrased for the person who wrote it."""

    field: str
    value: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {_show(self.value)}: {self.rule}"


def _show(value: Any) -> str:
    """A short, stable rendering of a value (JSON, cut to one line)."""
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def join_path(parent: str, child: str | int) -> str:
    """`spec` + `models` -> `spec.models`; `spec.models` + 1 -> `spec.models[1]`."""
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else child


def lookup(obj: Any, dotted: str) -> Any:
    """The value at a relative `.a.b` path inside obj, or None when absent."""
    for part in filter(None, dotted.split(".")):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj
