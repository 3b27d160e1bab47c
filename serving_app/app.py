"""Application builders named by serveConfigV2's ``import_path``.

``build_model_app`` serves one model (its application is routed at ``/<model>``);
``build_router_app`` serves the fleet's unified endpoint at ``/``. Both validate their args
strictly first, so a bad document fails the application with a message naming the field.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.llm._internal.serve.constants import RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING
from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
from ray.llm._internal.serve.core.ingress.builder import _build_direct_streaming_llm_deployment
from ray.llm._internal.serve.core.ingress.router import LLMRouter
from ray.serve import Application
from ray.serve._private.constants import RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY
from ray.serve.llm import LLMConfig, build_llm_deployment

from serving_app.args import ModelAppArgs, RouterAppArgs
from serving_app.engine import llm_config_dict
from serving_app.ingress import make_ingress_class
from serving_app.server import SERVER_DEPLOYMENT_PREFIX, FleetLLMServer

# Ingresses only parse JSON and forward handles: no CPU reservation (they would otherwise take a
# whole core each from the engines on a small box), one replica always up so a request to a model
# at zero never waits for the ingress too, and a few more under load.
INGRESS_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0},
    "max_ongoing_requests": 1000,
    "autoscaling_config": {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 200,
    },
}


def build_model_app(args: dict[str, Any]) -> Application:
    parsed = ModelAppArgs.model_validate(args)
    llm_config = LLMConfig.model_validate(llm_config_dict(parsed))
    if RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING:
        return _direct_model_app(parsed, llm_config)
    server = build_llm_deployment(
        llm_config,
        name_prefix=SERVER_DEPLOYMENT_PREFIX,
        deployment_cls=FleetLLMServer,
        bind_kwargs={"adapters": parsed.adapters},
    )
    ingress = make_ingress_class(parsed.front_door, endpoint="prefix")
    return serve.deployment(name="ModelIngress", **INGRESS_OPTIONS)(ingress).bind(
        llm_deployments={parsed.name: server},
        model_cards={parsed.name: to_model_metadata(parsed.name, llm_config)},
        adapters=dict.fromkeys(parsed.adapters, parsed.name),
    )


class FleetLLMRouter(LLMRouter):
    """Ray Serve LLM's ingress request router (HAProxy asks it which replica takes a request), told the
    model's adapters by name: Ray's recognises only `<model>:<suffix>` ids."""

    async def __init__(self, server: Any, *, adapters: list[str]) -> None:  # type: ignore[misc]
        self._adapters = frozenset(adapters)
        await super().__init__(server=server)

    def _get_multiplexed_model_id(self, request_body: dict[str, Any] | None) -> str:
        model = request_body.get("model") if isinstance(request_body, dict) else None
        return model if isinstance(model, str) and model in self._adapters else ""


def _direct_model_app(parsed: ModelAppArgs, llm_config: LLMConfig) -> Application:
    """High-throughput mode: the model server is the application's ingress (see server.py), and a request
    router picks its replica for HAProxy, the way `build_openai_app` does it. HAProxy shows the router the
    request body (RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY, set on every node in this mode) so that
    adapters and prefix-aware routing work on this path too."""
    if (
        parsed.adapters or parsed.routing == "prefix_aware"
    ) and not RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY:
        raise ValueError(
            f"model {parsed.name!r}: adapters and prefixAware routing in high-throughput mode need "
            "RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY=1 on every Ray node: the operator sets it on the "
            "cluster it rolls out; a local Ray head gets it when started (modelfleet down, then up)"
        )
    server = _build_direct_streaming_llm_deployment(
        llm_config,
        name_prefix=SERVER_DEPLOYMENT_PREFIX,
        bind_kwargs={"front_door": parsed.front_door, "adapters": parsed.adapters},
        deployment_cls=FleetLLMServer,
    )
    # As Ray's builder: no CPU reservation (it sits beside the proxy), never the bottleneck.
    router = serve.deployment(FleetLLMRouter, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
    return server._with_ingress_request_router(router.bind(server=server, adapters=sorted(parsed.adapters)))


def build_router_app(args: dict[str, Any]) -> Application:
    parsed = RouterAppArgs.model_validate(args)
    ingress = make_ingress_class(parsed.front_door, endpoint="unified")
    return serve.deployment(name="FleetRouter", **INGRESS_OPTIONS)(ingress).bind(
        models=parsed.models, adapters=parsed.adapters, aliases=parsed.aliases
    )
