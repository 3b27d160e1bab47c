"""PATCH bodies by content type, with kube's rules on which types each resource accepts."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import yaml

from tests.kube.apiserver.errors import ApiError, bad_request, unsupported_media_type

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (`null` deletes; lists are replaced).

    Only the patched path is copied: the result shares everything else with `target` (and the
    values it takes from `patch`), so neither may be changed afterwards; the store's snapshots
    and parsed request bodies never are."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strip_directives(value: Any) -> Any:
    """Drop strategic-merge directives (`$patch`, `$retainKeys`, ...) we do not interpret."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def parse_body(content_type: str, body: bytes) -> Any:
    try:
        if content_type == APPLY:
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from exc


def apply_patch(content_type: str, current: dict[str, Any], body: bytes, *, custom: bool) -> dict[str, Any]:
    """The patched object. Custom resources reject strategic merge with 415, as kube does."""
    patch = parse_body(content_type, body)
    if content_type == JSON:
        try:
            patched: dict[str, Any] = jsonpatch.apply_patch(current, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
        return patched
    if content_type == MERGE:
        return dict(merge_patch(current, patch))
    if content_type == STRATEGIC and not custom:
        # Built-ins only; list merge keys (containers by name, ...) are not modelled: lists replace.
        return dict(merge_patch(current, _strip_directives(patch)))
    if content_type == APPLY:
        # Server-side apply approximated as a merge of the applied configuration: no field managers,
        # so fields dropped from the applied configuration are not removed.
        return dict(merge_patch(current, patch))
    raise unsupported_media_type(content_type)
