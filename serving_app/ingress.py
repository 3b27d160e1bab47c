"""Our OpenAI ingress: Ray Serve LLM's ``OpenAiIngress`` plus the fleet's own routes and errors.

The same class fronts a single model (its own application, reached under ``/<model>``) and the
whole fleet (the ``fleet`` router application at ``/``). In the router the model servers live in
other applications, so it looks their handles up by name instead of having them bound.

Added on top of the stock ingress: LoRA adapters and weighted aliases by name (serving_app/adapters.py),
``/v1/models`` listing them (an adapter with its ``parent``), unknown model -> 404 listing the known ones,
``/v1/infer``,
``/healthz``, Bearer auth, request limits, 503 + Retry-After in OpenAI's shape when a model's queue is full
or its replica died before answering, and an OpenAI error event that ends a stream whose replica died
(the stock ingress ends such a stream as if it were complete: a silently truncated answer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.responses import Response

from modelfleet_contract.args import AliasTargetArgs, FrontDoorArgs
from modelfleet_contract.errors import OVERLOADED, RETRY_AFTER_S, error_body, overloaded, unknown_model
from serving_app.adapters import model_card, pick_target
from serving_app.errors import FleetHTTPError, handle_fleet_error, handle_validation_error
from serving_app.frontdoor import add_front_door
from serving_app.infer import InferRequest, chat_request, infer_reply
from serving_app.metrics import note_model
from serving_app.ray_compat import DEFAULT_ENDPOINTS, ModelCard, OpenAiIngress, init, make_fastapi_ingress
from serving_app.server import server_deployment_name

log = logging.getLogger("ray.serve")

# The fleet's endpoints; Ray's tokenize/score extras stay off the public surface.
# /v1/models answers our own cards (Ray's response model would drop an adapter's `parent`).
ENDPOINTS = {
    name: DEFAULT_ENDPOINTS[name] for name in ("completions", "chat", "embeddings", "transcriptions")
} | {
    "models": lambda app: app.get("/v1/models"),
    "model_data": lambda app: app.get("/v1/models/{model:path}"),
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
        adapters: dict[str, str] | None = None,
        aliases: dict[str, list[AliasTargetArgs]] | None = None,
        **kwargs: Any,
    ) -> None:
        self._adapters = dict(adapters or {})  # adapter -> the model it runs on
        self._aliases = {name: list(targets) for name, targets in (aliases or {}).items()}
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
        if model is None and len(self._model_cards) == 1:  # a model's own ingress: the model
            return next(iter(self._model_cards))
        if model is None or (model not in self._model_cards and model not in self._adapters):
            raise FleetHTTPError(404, unknown_model(model, self._names()), param="model")
        note_model(model)
        return model

    def _names(self) -> list[str]:
        """Every name a request's `model` may carry here: models, adapters, aliases."""
        return [*self._model_cards, *self._adapters, *self._aliases]

    def _get_configured_serve_handle(self, model_id: str) -> DeploymentHandle[Any]:
        """An adapter's requests go to its model's server as Serve multiplexed requests (the adapter's name
        is the multiplexed model id): Serve prefers a replica that has the adapter loaded."""
        base = self._adapters.get(model_id)
        if base is None:
            return super()._get_configured_serve_handle(model_id)  # type: ignore[no-any-return]
        if model_id not in self._configured_serve_handles:
            self._configured_serve_handles[model_id] = self._default_serve_handles[base].options(
                stream=True, multiplexed_model_id=model_id
            )
        handle: DeploymentHandle[Any] = self._configured_serve_handles[model_id]
        return handle

    def _resolve_alias(self, body: Any) -> Any:
        """A request to an alias becomes a request to one of its targets (the reply names the target)."""
        targets = self._aliases.get(getattr(body, "model", None) or "")
        if not targets:
            return body
        user = getattr(body, "user", None)
        return body.model_copy(update={"model": pick_target(body.model, targets, user)})

    # Our own cards, as plain JSON: Ray's response models (ModelList, ModelCard) would drop an adapter's
    # `parent` and an alias's `targets`.
    async def models(self) -> dict[str, Any]:  # type: ignore[override]
        cards = [model_card(m) for m in sorted(self._model_cards)]
        cards += [model_card(a, parent=base) for a, base in sorted(self._adapters.items())]
        cards += [model_card(a, targets=t) for a, t in sorted(self._aliases.items())]
        return {"object": "list", "data": cards}

    async def model_data(self, model: str) -> dict[str, Any]:  # type: ignore[override]
        for card in (await self.models())["data"]:
            if card["id"] == model:
                found: dict[str, Any] = card
                return found
        raise FleetHTTPError(404, unknown_model(model, self._names()))

    async def _get_response(self, **kwargs: Any) -> AsyncGenerator[Any, None]:
        """Ray Serve LLM's call to the model, with its failures made visible to clients."""
        started = False
        kwargs["body"] = self._resolve_alias(kwargs["body"])
        try:
            async for response in super()._get_response(**kwargs):
                started = True
                yield response
        except HTTPException as exc:  # the model's server refused (e.g. an adapter that cannot load)
            kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
            raise FleetHTTPError(exc.status_code, str(exc.detail), type=kind) from exc
        except BackPressureError as exc:
            raise _unavailable(overloaded()) from exc
        except (RayActorError, ActorUnavailableError) as exc:
            if not started:
                raise _unavailable(
                    f"The model's replica stopped before answering ({type(exc).__name__}); retry in "
                    f"{RETRY_AFTER_S}s while Serve replaces it."
                ) from exc
            log.warning("a model replica failed mid-stream: %s", type(exc).__name__)
            yield _stream_error(
                f"The model's replica stopped while answering ({type(exc).__name__}): the answer is "
                "incomplete. Retry the request."
            )
        except Exception as exc:
            if not started:
                raise
            # The engine failed after the first chunk: the client must not take a truncated answer for a whole
            # one (the SDKs raise on an error event; a clean end would look complete).
            log.warning("a model failed mid-stream: %s", type(exc).__name__)
            yield _stream_error(
                f"The model failed while answering ({type(exc).__name__}): the answer is incomplete. "
                "Retry the request."
            )

    async def infer(self, body: InferRequest) -> Response:
        """``{model_id, input, params}`` -> ``{text, model_id, finish_reason}`` (never streams)."""
        async for chunk in self._get_response(body=chat_request(body), call_method="chat"):
            return infer_reply(body, chunk)
        raise FleetHTTPError(500, "The engine returned no reply")

    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}


def _unavailable(message: str) -> FleetHTTPError:
    return FleetHTTPError(503, message, type=OVERLOADED, headers={"Retry-After": str(RETRY_AFTER_S)})


def _stream_error(message: str) -> str:
    """An OpenAI error event: the SDKs raise it (``APIError``) instead of returning a truncated answer."""
    return f"data: {json.dumps(error_body(503, message, 'server_error'))}\n\n"


def make_ingress_class(front_door: FrontDoorArgs, *, endpoint: str, tasks: Mapping[str, str]) -> type:
    """A Serve ingress class around ``FleetIngress`` with error handling and the front-door layers (request
    metrics labelled ``endpoint``: ``unified`` for the fleet's router, ``prefix`` for a model's ingress;
    ``tasks``: each name it serves -> its task)."""
    app: FastAPI = init()
    app.add_exception_handler(FleetHTTPError, handle_fleet_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    # BackPressureError needs no handler here: Serve installs its own (plain text) on every ingress app, so
    # FleetIngress._get_response turns it into our 503 before it gets that far.
    add_front_door(app, front_door, endpoint=endpoint, tasks=tasks)
    cls: type = make_fastapi_ingress(FleetIngress, endpoint_map=ENDPOINTS, app=app)
    return cls
