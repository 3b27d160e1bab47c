"""The serveConfigV2 document: one Serve application per model plus the `fleet` router at `/`.

The `args` of each application are what the serving app validates with the contract's models
(modelfleet_contract/args.py) before it builds anything; tests/unit/test_args_contract.py checks every
fleet the renderer can produce against them.
"""

from __future__ import annotations

from typing import Any

from modelfleet.api.quantity import quantity_bytes
from modelfleet.api.v1alpha1 import ModelFleetSpec, ModelSpec
from modelfleet.yamlio import dump
from modelfleet_contract.wire import MODEL_IMPORT_PATH, ROUTER_APP_NAME, ROUTER_IMPORT_PATH, SERVE_PORT

# The fleet spec's routing names -> the serving app's (Python's spelling in args, as everywhere there).
ROUTING = {"powerOfTwo": "power_of_two", "prefixAware": "prefix_aware"}


def front_door_args(spec: ModelFleetSpec) -> dict[str, Any]:
    """What every front door enforces: the key files to accept (names only; the keys are mounted, never
    rendered) and the fleet's request limits."""
    limits = spec.limits
    return {
        "api_keys": [ref.path for ref in spec.all_api_keys],
        "max_request_bytes": limits.max_request_bytes,
        "max_tokens": limits.max_tokens,
        "max_n": limits.max_n,
        "max_batch_items": limits.max_batch_items,
        "media_hosts": sorted(
            {str(host) for m in spec.models for host in m.engine_args.get("allowed_media_domains") or []}
        ),
        "body_timeout_s": limits.body_timeout_seconds,
    }


def model_args(model: ModelSpec, front_door: dict[str, Any]) -> dict[str, Any]:
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
        "adapters": {
            adapter.name: adapter.source for adapter in sorted(model.adapters, key=lambda a: a.name)
        },
        "max_adapters_per_replica": model.max_adapters_per_replica,
        "routing": ROUTING[model.routing],
        "front_door": front_door,
    }


def router_args(spec: ModelFleetSpec, front_door: dict[str, Any]) -> dict[str, Any]:
    """The `args` of the fleet's router: the model applications, which model each adapter runs on, and the
    aliases with their weighted targets (sorted, so reordering the spec is a no-op)."""
    return {
        "models": sorted(model.name for model in spec.models),
        "adapters": dict(sorted(spec.adapter_bases.items())),
        "aliases": {
            alias.name: [{"model": t.model, "weight": t.weight} for t in alias.targets]
            for alias in sorted(spec.aliases, key=lambda a: a.name)
        },
        "tasks": {
            model.name: model.task
            for model in sorted(spec.models, key=lambda m: m.name)
            if model.task != "generate"
        },
        "front_door": front_door,
    }


def serve_config(spec: ModelFleetSpec) -> dict[str, Any]:
    """The Serve deploy config as a dict; applications sorted by name so reordering models is a no-op."""
    front_door = front_door_args(spec)
    models = sorted(spec.models, key=lambda m: m.name)
    applications: list[dict[str, Any]] = [
        {
            "name": model.name,
            "route_prefix": f"/{model.name}",
            "import_path": MODEL_IMPORT_PATH,
            "args": model_args(model, front_door),
        }
        for model in models
    ]
    applications.append(
        {
            "name": ROUTER_APP_NAME,
            "route_prefix": "/",
            "import_path": ROUTER_IMPORT_PATH,
            "args": router_args(spec, front_door),
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
