"""Application builders named by serveConfigV2's ``import_path``.

``build_model_app`` serves one model (its application is routed at ``/<model>``);
``build_router_app`` serves the fleet's unified endpoint at ``/``. Both validate their args
strictly first, so a bad document fails the application with a message naming the field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ray import serve
from ray.serve import Application
from ray.serve.llm import LLMConfig, build_llm_deployment

from modelfleet_contract.args import ModelAppArgs, RouterAppArgs
from serving_app.engine import llm_config_dict
from serving_app.ingress import make_ingress_class
from serving_app.ray_compat import (
    RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING,
    LLMRouter,
    _build_direct_streaming_llm_deployment,
    to_model_metadata,
)
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
    ingress = make_ingress_class(parsed.front_door, endpoint="prefix", tasks=parsed.name_tasks())
    return serve.deployment(name="ModelIngress", **INGRESS_OPTIONS)(ingress).bind(
        llm_deployments={parsed.name: server},
        model_cards={parsed.name: to_model_metadata(parsed.name, llm_config)},
        adapters=dict.fromkeys(parsed.adapters, parsed.name),
    )


T = TypeVar("T")

# How long a replica pick may wait before the router sends a counted request beside it (FleetRequestRouter).
WAKE_NUDGE_AFTER_S = 1.0


class FleetRequestRouter(LLMRouter):
    """Ray Serve LLM's request router, loaded from this package so that its replicas import serving_app (and
    apply serving_app/__init__.py's local settings) like every other replica of a fleet, and made to wake a
    model that has no replica.

    HAProxy asks this router which replica takes a request. Ray's pick (`choose_replica` without a reserved
    slot) waits for a replica without counting as a queued request, so Serve's autoscaler never hears of
    it: a request that reaches the router just as the model scales to zero (HAProxy still lists the router
    for a few hundred milliseconds) waits for a replica that nothing starts, until HAProxy's old process is
    stopped 120 s later and the client's connection drops. A pick still waiting after WAKE_NUDGE_AFTER_S
    sends a cheap request to the model's server beside it (`llm_config`); that request is queued the counted
    way, so the autoscaler starts a replica and both go through. Later requests reach Serve's proxy, which
    wakes the model the counted way itself."""

    async def _pick_replica(self, handle: Any, *args: Any, **kwargs: Any) -> Any:
        server = self._handle
        return await waking(
            super()._pick_replica(handle, *args, **kwargs),
            lambda: server.options(method_name="llm_config", stream=False).remote(),
        )


class Cancellable(Protocol):
    def cancel(self) -> Any: ...


async def waking(pick: Awaitable[T], nudge: Callable[[], Cancellable]) -> T:
    """`pick`'s result; if it is not there after WAKE_NUDGE_AFTER_S, `nudge()` is sent beside it and
    cancelled once the pick is done (or the client has gone)."""
    picking = asyncio.ensure_future(pick)
    sent = None
    try:
        done, _ = await asyncio.wait({picking}, timeout=WAKE_NUDGE_AFTER_S)
        if not done:
            sent = nudge()
        return await picking
    finally:
        picking.cancel()  # a no-op once it is done; else the client went away
        if sent is not None:
            sent.cancel()


def _direct_model_app(parsed: ModelAppArgs, llm_config: LLMConfig) -> Application:
    """High-throughput mode: the model server is the application's ingress (see server.py), and Ray Serve
    LLM's request router picks its replica for HAProxy, the way `build_openai_app` does it. HAProxy does not
    show the router the body (see modelfleet/render/cluster.py): the router balances load, the server loads
    the adapter a request names, and prefix-aware routing applies on the fleet's endpoint only."""
    server = _build_direct_streaming_llm_deployment(
        llm_config,
        name_prefix=SERVER_DEPLOYMENT_PREFIX,
        bind_kwargs={"front_door": parsed.front_door, "adapters": parsed.adapters, "task": parsed.task},
        deployment_cls=FleetLLMServer,
    )
    # As Ray's builder does, minus its LoRA check (which wants the body forwarded): no CPU reservation (the
    # router sits beside the proxy), never the bottleneck.
    router: Any = serve.deployment(  # Ray's overloads type the class form as a decorator
        FleetRequestRouter, name="LLMRouter", max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0}
    )
    return server._with_ingress_request_router(router.bind(server=server))


def build_router_app(args: dict[str, Any]) -> Application:
    parsed = RouterAppArgs.model_validate(args)
    ingress = make_ingress_class(parsed.front_door, endpoint="unified", tasks=parsed.name_tasks())
    return serve.deployment(name="FleetRouter", **INGRESS_OPTIONS)(ingress).bind(
        models=parsed.models, adapters=parsed.adapters, aliases=parsed.aliases
    )
