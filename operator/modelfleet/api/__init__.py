"""The ModelFleet API: pydantic models (v1alpha1), the generated CRD and the checks CEL cannot express."""

from modelfleet.api.v1alpha1 import ModelFleet, ModelFleetSpec, ModelFleetStatus, ModelSpec, WorkerGroup

__all__ = ["ModelFleet", "ModelFleetSpec", "ModelFleetStatus", "ModelSpec", "WorkerGroup"]
