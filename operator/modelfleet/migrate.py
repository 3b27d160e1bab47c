"""`modelfleet import`: convert a Ray Serve LLM config (serve deploy YAML) into a ModelFleet.

Earlier tools of this kind deployed `ray.serve.llm:build_openai_app` applications whose `args.llm_configs`
list the models. Everything that has a ModelFleet field is carried; everything else is reported by its
path so nothing is lost silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from modelfleet.api.v1alpha1 import API_VERSION, KIND

_CARRIED_LLM_KEYS = {
    "model_loading_config",
    "deployment_config",
    "engine_kwargs",
    "accelerator_type",
    "lora_config",
}
_CARRIED_DEPLOYMENT_KEYS = {
    "autoscaling_config",
    "max_ongoing_requests",
    "ray_actor_options",
    "num_cpus",
    "num_gpus",
    "num_replicas",
    "request_router_config",
}
# Ray Serve LLM's request routers a fleet's `routing` names, by their import paths (public and internal).
_ROUTERS = {
    "PrefixCacheAffinityRouter": "prefixAware",
    "PowerOfTwoChoicesRequestRouter": "powerOfTwo",
}
_CARRIED_AUTOSCALING_KEYS = {
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "upscale_delay_s",
    "downscale_delay_s",
    "initial_replicas",
}


@dataclass
class Migration:
    """The fleet document and the source fields it could not carry."""

    fleet: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:63].strip("-") or "model"


def _report_extra(mapping: dict[str, Any], carried: set[str], path: str, dropped: list[str]) -> None:
    dropped.extend(f"{path}.{key}" for key in sorted(mapping) if key not in carried)


def _model(config: dict[str, Any], path: str, dropped: list[str]) -> dict[str, Any]:
    _report_extra(config, _CARRIED_LLM_KEYS, path, dropped)
    loading = config.get("model_loading_config") or {}
    _report_extra(loading, {"model_id", "model_source"}, f"{path}.model_loading_config", dropped)
    model_id = str(loading.get("model_id") or loading.get("model_source") or "model")
    deployment = config.get("deployment_config") or {}
    _report_extra(deployment, _CARRIED_DEPLOYMENT_KEYS, f"{path}.deployment_config", dropped)
    actor = deployment.get("ray_actor_options") or {}
    _report_extra(
        actor, {"num_cpus", "num_gpus", "memory"}, f"{path}.deployment_config.ray_actor_options", dropped
    )
    gpus = float(actor.get("num_gpus", deployment.get("num_gpus", 1)))
    cpus = float(actor.get("num_cpus", deployment.get("num_cpus", 1)))
    model: dict[str, Any] = {
        "name": _dns_label(model_id),
        "source": str(loading.get("model_source") or model_id),
        "accelerator": "gpu" if gpus > 0 else "cpu",
        "cpus": cpus,
    }
    if gpus > 0:
        model["gpus"] = gpus
    if "memory" in actor:
        model["memory"] = str(int(actor["memory"]))
    replicas: dict[str, Any] = {}
    autoscaling = deployment.get("autoscaling_config") or {}
    _report_extra(
        autoscaling, _CARRIED_AUTOSCALING_KEYS, f"{path}.deployment_config.autoscaling_config", dropped
    )
    if "num_replicas" in deployment and isinstance(deployment["num_replicas"], int):
        replicas["min"] = replicas["max"] = deployment["num_replicas"]
    for source_key, target_key in (
        ("min_replicas", "min"),
        ("max_replicas", "max"),
        ("target_ongoing_requests", "targetOngoingRequests"),
        ("upscale_delay_s", "upscaleDelaySeconds"),
        ("downscale_delay_s", "downscaleDelaySeconds"),
    ):
        if source_key in autoscaling:
            replicas[target_key] = autoscaling[source_key]
    if "max_ongoing_requests" in deployment:
        replicas["maxOngoingRequests"] = deployment["max_ongoing_requests"]
    if replicas:
        model["replicas"] = replicas
    if config.get("accelerator_type"):
        dropped.append(f"{path}.accelerator_type (set a nodeSelector on the worker group instead)")
    engine = config.get("engine_kwargs") or {}
    # The fleet sets these itself (from name, source, adapters and maxAdaptersPerReplica).
    owned = ("model", "served_model_name", "enable_lora", "max_loras")
    if engine:
        model["engineArgs"] = {k: v for k, v in engine.items() if k not in owned}
        dropped.extend(f"{path}.engine_kwargs.{k}" for k in ("model", "served_model_name") if k in engine)
    _routing(deployment.get("request_router_config"), model, f"{path}.deployment_config", dropped)
    _lora(config.get("lora_config"), engine, model, path, dropped)
    return model


def _routing(config: Any, model: dict[str, Any], path: str, dropped: list[str]) -> None:
    if not isinstance(config, dict):
        return
    router = str(config.get("request_router_class", "")).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    if router in _ROUTERS:
        model["routing"] = _ROUTERS[router]
        _report_extra(config, {"request_router_class"}, f"{path}.request_router_config", dropped)
    else:
        dropped.append(f"{path}.request_router_config (routing is powerOfTwo or prefixAware)")


def _lora(config: Any, engine: dict[str, Any], model: dict[str, Any], path: str, dropped: list[str]) -> None:
    """Ray Serve LLM finds adapters by listing a bucket at request time; a fleet names each adapter. The
    per-replica bound carries over; the bucket is reported so its adapters can be listed by hand."""
    if not isinstance(config, dict):
        return
    per_replica = config.get("max_num_adapters_per_replica", engine.get("max_loras"))
    if isinstance(per_replica, int):
        model["maxAdaptersPerReplica"] = per_replica
    if config.get("dynamic_lora_loading_path"):
        dropped.append(
            f"{path}.lora_config.dynamic_lora_loading_path {config['dynamic_lora_loading_path']!r} (list "
            "each adapter under models[].adapters with the folder or Hugging Face repo it is loaded from)"
        )
    _report_extra(
        config,
        {"max_num_adapters_per_replica", "dynamic_lora_loading_path"},
        f"{path}.lora_config",
        dropped,
    )


def import_serve_config(config: dict[str, Any], *, name: str, namespace: str = "default") -> Migration:
    """A ModelFleet holding every model of every Ray Serve LLM application in the config."""
    dropped: list[str] = []
    models: list[dict[str, Any]] = []
    _report_extra(config, {"applications"}, "", dropped)
    for a_index, app in enumerate(config.get("applications") or []):
        app_path = f"applications[{a_index}]"
        _report_extra(app, {"name", "route_prefix", "import_path", "args"}, app_path, dropped)
        args = app.get("args") or {}
        _report_extra(args, {"llm_configs"}, f"{app_path}.args", dropped)
        for m_index, llm in enumerate(args.get("llm_configs") or []):
            m_path = f"{app_path}.args.llm_configs[{m_index}]"
            if not isinstance(llm, dict):
                dropped.append(f"{m_path} (a file reference: inline the config to import it)")
                continue
            models.append(_model(llm, m_path, dropped))
        if app.get("route_prefix") not in (None, "/"):
            dropped.append(f"{app_path}.route_prefix {app['route_prefix']!r} (each model gets /<name>)")
    spec: dict[str, Any] = {"models": models, "workers": _workers(models)}
    fleet = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return Migration(fleet=fleet, dropped=dropped)


def _workers(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One GPU group big enough for the largest model; a CPU group when some model runs on CPU."""
    groups: list[dict[str, Any]] = []
    gpu_models = [m for m in models if m["accelerator"] == "gpu"]
    if gpu_models:
        per_worker = max(1, math.ceil(max(m["gpus"] for m in gpu_models)))
        cpus = max(8.0, *(m["cpus"] for m in gpu_models))
        groups.append(
            {
                "name": "gpu",
                "gpusPerWorker": per_worker,
                "cpusPerWorker": cpus,
                "minWorkers": 0,
                "maxWorkers": max(1, len(gpu_models)),
            }
        )
    cpu_models = [m for m in models if m["accelerator"] == "cpu"]
    if cpu_models:
        groups.append(
            {
                "name": "cpu",
                "gpusPerWorker": 0,
                "cpusPerWorker": max(m["cpus"] for m in cpu_models),
                "minWorkers": 0,
                "maxWorkers": max(1, len(cpu_models)),
            }
        )
    return groups
