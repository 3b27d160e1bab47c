"""The JSONPath subset that `additionalPrinterColumns` use (client-go's dialect, no `{}`).

Supports `.field`, `['field']`, `[N]`, `[*]` and `[?(@.path == "literal")]` filters (also `!=`).
"""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-]+)"""
    r"""|\[['"](?P<quoted>[^'"]+)['"]\]"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[(?P<star>\*)\]|\.\*"""
    r"""|\[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_\-]+)+)\s*(?P<fop>==|!=)\s*(?P<fvalue>"[^"]*"|'[^']*'|[^)\s]+)\s*\)\]"""
)


def _steps(path: str) -> list[re.Match[str]]:
    path = path.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    steps, pos = [], 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        steps.append(m)
        pos = m.end()
    return steps


def _literal(text: str) -> Any:
    if text[0] in "'\"":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def find(obj: Any, path: str) -> list[Any]:
    """All values at `path` in `obj` (empty when absent)."""
    current = [obj]
    for step in _steps(path):
        found: list[Any] = []
        for value in current:
            if step["field"] or step["quoted"]:
                key = step["field"] or step["quoted"]
                if isinstance(value, dict) and key in value:
                    found.append(value[key])
            elif step["index"] is not None:
                index = int(step["index"])
                if isinstance(value, list) and -len(value) <= index < len(value):
                    found.append(value[index])
            elif step["fpath"]:
                expected, negate = _literal(step["fvalue"]), step["fop"] == "!="
                items = value if isinstance(value, list) else []
                found += [i for i in items if (find(i, step["fpath"]) == [expected]) != negate]
            elif isinstance(value, list):
                found += value
            elif isinstance(value, dict):
                found += list(value.values())
        current = found
    return current
