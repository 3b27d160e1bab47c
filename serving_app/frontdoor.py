"""The layers every front door puts around its app: the router, a model's ingress, a model's own server.

Outermost first: request metrics (so refusals are counted too), Bearer auth (no work for a request without
a valid key), then the fleet's request limits (the body is read once, bounded in size and time).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from fastapi import FastAPI

from modelfleet_contract.args import FrontDoorArgs
from serving_app.auth import ApiKeys, BearerAuthMiddleware
from serving_app.limits import RequestLimitsMiddleware
from serving_app.metrics import RequestMetricsMiddleware


def add_front_door(
    app: FastAPI,
    args: FrontDoorArgs,
    *,
    endpoint: str,
    model: str = "",
    known_models: Collection[str] | None = None,
    tasks: Mapping[str, str] | None = None,
) -> None:
    """Wrap ``app`` (built or not) in the front-door layers; ``endpoint`` and ``model`` label its metrics;
    ``known_models`` makes the limits layer answer a request for any other model with a 404; ``tasks`` (each
    name served behind the door -> its task) makes it refuse a call the name's task does not answer."""
    # A built app (vLLM's builds its stack eagerly) rebuilds lazily with the layers below.
    app.middleware_stack = None
    # Starlette puts the last added outermost.
    app.add_middleware(RequestLimitsMiddleware, limits=args, known_models=known_models, tasks=tasks)
    if args.api_keys:
        app.add_middleware(BearerAuthMiddleware, keys=ApiKeys(args.api_keys))
    app.add_middleware(RequestMetricsMiddleware, endpoint=endpoint, model=model)
