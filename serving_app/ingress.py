"""Our OpenAI ingress: Ray Serve LLM's ``OpenAiIngress`` plus the fleet's own routes and errors.

The same class fronts a single model (its own application, reached under ``/<model>``) and the
whole fleet (the ``fleet`` router application at ``/``). In the router the model servers live in
other applications, so it looks their handles up by name instead of having them bound.

Added on top of the stock ingress: unknown model -> 404 listing the known models, ``/v1/infer``,
``/healthz``, Bearer auth, request limits, 503 + Retry-After when a model's queue is full.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard
from ray.llm._internal.serve.core.ingress.ingress import (
    DEFAULT_ENDPOINTS,
    OpenAiIngress,
    init,
    make_fastapi_ingress,
)
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.responses import Response

from serving_app.args import FrontDoorArgs
from serving_app.errors import FleetHTTPError, handle_backpressure, handle_fleet_error
from serving_app.frontdoor import add_front_door
from serving_app.infer import InferRequest, chat_request, infer_reply
from serving_app.metrics import note_model
from serving_app.server import server_deployment_name

# The fleet's endpoints; Ray's tokenize/score/transcription extras stay off the public surface.
ENDPOINTS = {
    name: DEFAULT_ENDPOINTS[name] for name in ("models", "model_data", "completions", "chat", "embeddings")
} | {
    "infer": lambda app: app.post("/v1/infer"),
    "healthz": lambda app: app.get("/healthz"),
}


class FleetIngress(OpenAiIngress):
    def __init__(
        self,
        llm_deployments: dict[str, DeploymentHandle[Any]] | None = None,
        model_cards: dict[str, ModelCard] | None = None,
        *,
        models: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if llm_deployments is None:
            # Router: the servers belong to the model applications (app name = model name).
            names = models or []
            llm_deployments = {
                m: serve.get_deployment_handle(server_deployment_name(m), app_name=m) for m in names
            }
            model_cards = {
                m: ModelCard(id=m, object="model", owned_by="modelfleet", permission=[], metadata={})
                for m in names
            }
        super().__init__(llm_deployments, model_cards or {}, **kwargs)

    async def _get_model_id(self, model: str | None) -> str:
        known = sorted(self._model_cards)
        if model is None and len(known) == 1:
            return known[0]
        if model not in self._model_cards:
            raise FleetHTTPError(
                404,
                f"The model '{model}' does not exist. Known models: {', '.join(known)}.",
                param="model",
                type="invalid_request_error",
            )
        note_model(model)
        return model

    async def infer(self, body: InferRequest) -> Response:
        """``{model_id, input, params}`` -> ``{text, model_id, finish_reason}`` (never streams)."""
        async for chunk in self._get_response(body=chat_request(body), call_method="chat"):
            return infer_reply(body, chunk)
        raise FleetHTTPError(500, "The engine returned no reply")

    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}


def make_ingress_class(front_door: FrontDoorArgs, *, endpoint: str) -> type:
    """A Serve ingress class around ``FleetIngress`` with error handling and the front-door layers (request
    metrics labelled ``endpoint``: ``unified`` for the fleet's router, ``prefix`` for a model's ingress)."""
    app: FastAPI = init()
    app.add_exception_handler(FleetHTTPError, handle_fleet_error)
    app.add_exception_handler(BackPressureError, handle_backpressure)
    add_front_door(app, front_door, endpoint=endpoint)
    cls: type = make_fastapi_ingress(FleetIngress, endpoint_map=ENDPOINTS, app=app)
    return cls
