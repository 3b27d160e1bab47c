"""The serveConfigV2 document: one Serve application per model plus the `fleet` router at `/`.

The `args` of each application are the only contract between the operator and `serving_app`
(DESIGN §5); `tests/unit/test_args_contract.py` validates them with the serving app's own models.
"""

from __future__ import annotations

from typing import Any

from modelfleet.api.quantity import quantity_bytes
from modelfleet.api.v1alpha1 import SERVE_PORT, ModelFleetSpec, ModelSpec
from modelfleet.yamlio import dump

MODEL_IMPORT_PATH = "serving_app.app:build_model_app"
ROUTER_IMPORT_PATH = "serving_app.app:build_router_app"
ROUTER_APP_NAME = "fleet"
# The environment variable the serving app reads the API key from; the key itself is never rendered.
API_KEY_ENV = "MODELFLEET_API_KEY"


def model_args(model: ModelSpec, api_key_env: str | None) -> dict[str, Any]:
    """The `args` of one model's application (snake_case, every key present)."""
    replicas = model.replicas
    return {
        "name": model.name,
        "source": model.source,
        "task": model.task,
        "accelerator": model.accelerator,
        "gpus": model.gpu_share,
        "cpus": model.cpus,
        "memory_bytes": quantity_bytes(model.memory) if model.memory else None,
        "replicas": {
            "min": replicas.min,
            "max": replicas.max,
            "initial": None,
            "target_ongoing_requests": replicas.target_ongoing_requests,
            "max_ongoing_requests": replicas.max_ongoing_requests,
            "upscale_delay_s": replicas.upscale_delay_seconds,
            "downscale_delay_s": replicas.downscale_delay_seconds,
        },
        "engine_args": dict(model.engine_args),
        "api_key_env": api_key_env,
    }


def serve_config(spec: ModelFleetSpec) -> dict[str, Any]:
    """The Serve deploy config as a dict; applications sorted by name so reordering models is a no-op."""
    api_key_env = API_KEY_ENV if spec.api_key is not None else None
    models = sorted(spec.models, key=lambda m: m.name)
    applications: list[dict[str, Any]] = [
        {
            "name": model.name,
            "route_prefix": f"/{model.name}",
            "import_path": MODEL_IMPORT_PATH,
            "args": model_args(model, api_key_env),
        }
        for model in models
    ]
    applications.append(
        {
            "name": ROUTER_APP_NAME,
            "route_prefix": "/",
            "import_path": ROUTER_IMPORT_PATH,
            "args": {"models": [model.name for model in models], "api_key_env": api_key_env},
        }
    )
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": applications,
    }


def serve_config_v2(spec: ModelFleetSpec) -> str:
    """serveConfigV2 as the YAML string KubeRay compares byte for byte."""
    return dump(serve_config(spec))
