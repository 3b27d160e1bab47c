"""KubeRay for tests and benchmarks: its CRDs from the Go module the test control plane builds it from,
and RayService statuses shaped as KubeRay writes them (`rayv1.RayServiceStatuses` in
ray-operator/apis/ray/v1/rayservice_types.go), which `bench operator` writes at scale without a Ray
cluster (no test writes a RayService status: the end-to-end tests read KubeRay's own)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.cluster import binaries

KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"


def kuberay_crd_dir() -> Path:
    """KubeRay's CRDs (config/crd/bases/ of the pinned ray-operator module, from the Go module cache)."""
    return binaries.module_dir(KUBERAY_MODULE, pinned_in="kuberay") / "config" / "crd" / "bases"


def rayservice_status(name: str, apps: Mapping[str, tuple[str, str]], *, ready: bool) -> dict[str, Any]:
    """A `{"status": ...}` patch body: `apps` maps application name to (status, message)."""
    return {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "NonZeroServeEndpoints" if ready else "Initializing",
                    "lastTransitionTime": "2026-11-23T00:00:00Z",
                    "message": "",
                }
            ],
            "activeServiceStatus": {
                "rayClusterName": f"{name}-abcde",
                "applicationStatuses": {
                    app: {
                        "status": state,
                        "message": message,
                        "serveDeploymentStatuses": {f"LLMServer:{app}": {"status": "HEALTHY", "message": ""}},
                    }
                    for app, (state, message) in apps.items()
                },
            },
            "numServeEndpoints": 1 if ready else 0,
            "observedGeneration": 1,
        }
    }
