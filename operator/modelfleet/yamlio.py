"""Deterministic YAML in and out: sorted keys, block style, multi-line strings as `|` literals.

Deterministic output keeps GitOps diffs quiet: the same object always dumps to the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (serveConfigV2) as literal blocks, and an object used twice
    in full both times (no `&id001` anchors: readers and KubeRay's byte comparison want plain YAML)."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002 (PyYAML's signature)
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(obj: Any) -> str:
    """One YAML document, keys sorted, never wrapped."""
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=10_000, allow_unicode=True
    )


def dump_all(objs: list[Any]) -> str:
    """Several YAML documents separated by `---`."""
    return "---\n".join(dump(obj) for obj in objs)


def load_documents(text: str) -> Iterator[dict[str, Any]]:
    """The non-empty documents of a (multi-document) YAML text; each must be a mapping."""
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"document {index + 1}: expected a mapping, got {type(doc).__name__}")
        yield doc


def load_file(path: str | Path) -> list[dict[str, Any]]:
    """All documents of a YAML file (`-` reads standard input)."""
    if str(path) == "-":
        import sys

        return list(load_documents(sys.stdin.read()))
    return list(load_documents(Path(path).read_text(encoding="utf-8")))
