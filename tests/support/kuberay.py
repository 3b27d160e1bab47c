"""KubeRay's side, played by tests and benchmarks: RayService statuses shaped as KubeRay v1.7.0 writes them
(../shared/kuberay/rayservice_status_shape.json)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
