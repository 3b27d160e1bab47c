"""What the real API server guarantees for our CRD, which the operator and GitOps tools rely on:
optimistic concurrency (409 on a stale resourceVersion) and the spec/status split of the status
subresource (a spec write cannot set status, a status write cannot change spec or bump generation)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.kube.conftest import Kube
from tests.kube.test_operator import fleet

pytestmark = [pytest.mark.kube]


def created(kube: Kube, name: str) -> dict[str, Any]:
    kube.run("apply", "-f", "-", stdin=yaml.safe_dump(fleet(name)))
    found = kube.get("modelfleet", name)
    assert found is not None
    return found


def test_a_stale_resource_version_gets_409(kube: Kube) -> None:
    stale = created(kube, "occ")
    fresh = json.loads(json.dumps(stale))
    fresh["metadata"].setdefault("labels", {})["team"] = "a"
    kube.run("replace", "-f", "-", stdin=json.dumps(fresh))
    stale["metadata"].setdefault("labels", {})["team"] = "b"
    result = kube.run("replace", "-f", "-", stdin=json.dumps(stale), check=False)
    assert result.returncode != 0
    assert (
        "Operation cannot be fulfilled" in result.stderr and "the object has been modified" in result.stderr
    )
    assert (kube.get("modelfleet", "occ") or {})["metadata"]["labels"]["team"] == "a"


def test_status_and_spec_are_written_apart(kube: Kube) -> None:
    before = created(kube, "split")
    generation = before["metadata"]["generation"]
    # A status in a write of the main resource is ignored ...
    patched = kube.run(
        "patch", "mf", "split", "--type=merge", "-p", '{"status": {"message": "hand-written"}}', "-o", "json"
    )
    assert (json.loads(patched.stdout).get("status") or {}).get("message") != "hand-written"
    # ... and a spec in a write of /status too, without bumping the generation.
    patched = kube.run(
        "patch",
        "mf",
        "split",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"spec": {"head": {"cpus": 7}}, "status": {"message": "from status"}}',
        "-o",
        "json",
    )
    after = json.loads(patched.stdout)
    assert after["spec"].get("head", {}).get("cpus") != 7
    assert after["status"]["message"] == "from status"
    assert after["metadata"]["generation"] == generation
