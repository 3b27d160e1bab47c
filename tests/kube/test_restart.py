"""The operator rides out a kube-apiserver restart: kube-apiserver killed and started again on the same
etcd data, and the operator (not restarted) notices new fleets and RayService changes again."""

from __future__ import annotations

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.kube.conftest import Kube, wait_for
from tests.kube.test_operator import RS, apply, fleet, rayservice, wait_jsonpath

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("operator")]


def test_operator_recovers_from_an_api_server_restart(kube: Kube, control_plane: ControlPlane | None) -> None:
    if control_plane is None:
        pytest.skip("restarts the local control plane's kube-apiserver")
    apply(kube, fleet("before-restart"))
    rayservice(kube, "before-restart")
    wait_jsonpath(kube, "before-restart", "{.status.phase}", "Deploying")
    control_plane.restart_apiserver()
    # Both watches must be back: fleets (a new one gets its RayService) and RayServices (a deleted one
    # is put back, its owner still wants it).
    apply(kube, fleet("after-restart"))
    rayservice(kube, "after-restart")
    wait_jsonpath(kube, "after-restart", "{.status.phase}", "Deploying", timeout=60)
    uid = rayservice(kube, "before-restart")["metadata"]["uid"]
    kube.run("delete", RS, "before-restart")
    wait_for(
        lambda: (rs := kube.get(RS, "before-restart")) is not None and rs["metadata"]["uid"] != uid,
        timeout=60,
        what="the operator to put the deleted RayService back",
    )
