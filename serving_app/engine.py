"""Model args -> Ray Serve LLM ``LLMConfig``: placement, autoscaling and engine settings.

Pure mapping, no Ray calls, so the choices below are visible in one place and testable.
"""

from __future__ import annotations

from typing import Any

from modelfleet_contract.args import ModelAppArgs
from modelfleet_contract.errors import RETRY_AFTER_S

# Serve's defaults look back 30 s and smooth decisions; for a model that must wake from zero on the
# first request and for bursty LLM traffic we want decisions on recent load.
LOOK_BACK_PERIOD_S = 10.0
# How often handles and replicas push their queue lengths to Serve's controller (default 10 s; Ray 2.60
# still reads it from this field, marked deprecated in favour of env vars it does not read yet). A handle
# that queues a request for a model at zero replicas pushes at once, but that push carries only the
# points recorded so far, which after an earlier sleep average to 0; the wake then waited for the next
# periodic push: 9.5 s measured (docs/benchmarks.md). Every 0.5 s bounds it; a few small RPCs a second.
METRICS_INTERVAL_S = 0.5
# Queue depth per replica slot before Serve rejects with 503 (BackPressureError): deep enough to
# absorb a burst while a replica wakes, bounded so an overload answers instead of hanging.
QUEUE_SLOTS_PER_ONGOING_REQUEST = 4
# Serve's default policy plus the wake-from-zero metrics (serving_app/autoscaling.py).
AUTOSCALING_POLICY = "serving_app.autoscaling:FleetAutoscalingPolicy"


def autoscaling_config(args: ModelAppArgs) -> dict[str, Any]:
    r = args.replicas
    config: dict[str, Any] = {
        "min_replicas": r.min,
        "max_replicas": r.max,
        # Ray Serve LLM defaults this to 1e9, which never scales up: always set it.
        "target_ongoing_requests": r.target_ongoing_requests,
        "upscale_delay_s": r.upscale_delay_s,
        "downscale_delay_s": r.downscale_delay_s,
        "look_back_period_s": LOOK_BACK_PERIOD_S,
        "metrics_interval_s": METRICS_INTERVAL_S,
        "policy": {"policy_function": AUTOSCALING_POLICY},
    }
    if r.initial is not None:
        config["initial_replicas"] = r.initial
    return config


def placement(args: ModelAppArgs) -> dict[str, Any]:
    """LLMConfig fields that put one replica (actor + engine) in one bundle of our size.

    Ray Serve LLM adds the replica actor's own resources (1 CPU by default) to the first bundle;
    we zero the actor's share so ``cpus`` is the whole reservation, as the fleet spec promises.
    """
    bundle: dict[str, float] = {"CPU": args.cpus}
    if args.accelerator == "gpu":
        bundle["GPU"] = args.gpus
    actor: dict[str, Any] = {"num_cpus": 0}
    if args.memory_bytes is not None:
        actor["memory"] = args.memory_bytes
    return {
        "accelerator_config": {"kind": args.accelerator},
        "placement_group_config": {"bundles": [bundle], "strategy": "PACK"},
        "ray_actor_options": actor,
    }


# Skips the per-node download step for sources that are folders on the node (serving_app/callbacks.py).
LOCAL_CHECKPOINT_CALLBACK = "serving_app.callbacks:LocalCheckpointCallback"


# Ray Serve LLM's prefix-cache affinity router (its public path), for routing: prefix_aware.
PREFIX_AWARE_ROUTER = "ray.serve.llm.request_router:PrefixCacheAffinityRouter"


def engine_kwargs(args: ModelAppArgs) -> dict[str, Any]:
    kwargs = dict(args.engine_args)
    if args.task == "embed":
        kwargs.setdefault("runner", "pooling")
    if args.adapters:
        # vLLM's LoRA slots match Serve's multiplexing cache: a replica never holds an adapter the engine
        # had to drop. (The operator refuses fleets that set these two itself.)
        kwargs["enable_lora"] = True
        kwargs["max_loras"] = args.max_adapters_per_replica
    if args.routing == "prefix_aware":
        # Routing by prefix pays off only where the engine keeps the prefix's KV cache.
        kwargs["enable_prefix_caching"] = True
    return kwargs


def lora_config(args: ModelAppArgs) -> dict[str, Any] | None:
    """Ray Serve LLM's LoRA multiplexing for a model with adapters: each replica keeps at most
    ``max_adapters_per_replica`` loaded (least recently used evicted). There is no
    ``dynamic_lora_loading_path``: Ray's loader reads only cloud buckets, so FleetLLMServer loads adapters
    from the sources the fleet names (serving_app/adapters.py)."""
    if not args.adapters:
        return None
    return {"max_num_adapters_per_replica": args.max_adapters_per_replica}


def request_router_config(args: ModelAppArgs) -> dict[str, Any]:
    if args.routing == "prefix_aware":
        return {"request_router_config": {"request_router_class": PREFIX_AWARE_ROUTER}}
    return {}


def llm_config_dict(args: ModelAppArgs) -> dict[str, Any]:
    """The LLMConfig document for ``args`` (validated by Ray Serve LLM when built)."""
    where = placement(args)
    r = args.replicas
    return {
        "model_loading_config": {"model_id": args.name, "model_source": args.source},
        "engine_kwargs": engine_kwargs(args),
        "accelerator_config": where["accelerator_config"],
        "placement_group_config": where["placement_group_config"],
        "deployment_config": {
            "autoscaling_config": autoscaling_config(args),
            "max_ongoing_requests": r.max_ongoing_requests,
            "max_queued_requests": r.max_ongoing_requests * r.max * QUEUE_SLOTS_PER_ONGOING_REQUEST,
            # What a refused request gets where Serve answers it itself (HAProxy mode's direct ingress, and
            # Serve's own BackPressureError handler): 503 plus Retry-After, which OpenAI SDKs honour.
            "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S},
            "ray_actor_options": where["ray_actor_options"],
            **request_router_config(args),
        },
        "lora_config": lora_config(args),
        # 0 disables Ray Serve LLM's fixed 50 ms stream batching; FleetLLMServer batches after chunk one.
        "experimental_configs": {"stream_batching_interval_ms": 0},
        "callback_config": {"callback_class": LOCAL_CHECKPOINT_CALLBACK},
    }
