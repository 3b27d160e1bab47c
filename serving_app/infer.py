"""``/v1/infer``: the unified call (``{model_id, input, params}`` -> ``{text, model_id, finish_reason}``).

Shared by the ingress (router and per-model ingress, standard mode) and the model server itself
(direct streaming), so the call behaves the same on every path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from serving_app.errors import FleetHTTPError
from serving_app.ray_compat import ChatCompletionRequest, ChatCompletionResponse


class InferRequest(BaseModel):
    """The unified call: one input in, text out."""

    model_config = ConfigDict(extra="forbid")
    model_id: str
    input: str | list[dict[str, Any]] = Field(description="A prompt, or chat messages.")
    params: dict[str, Any] = Field(default_factory=dict, description="Sampling parameters.")


def chat_request(body: InferRequest, model: str | None = None) -> ChatCompletionRequest:
    """The non-streaming chat request `body` stands for; 400 naming `params` when they do not fit."""
    messages = [{"role": "user", "content": body.input}] if isinstance(body.input, str) else body.input
    params = {k: v for k, v in body.params.items() if k not in {"stream", "model", "messages"}}
    try:
        return ChatCompletionRequest(model=model or body.model_id, messages=messages, **params)
    except ValueError as exc:
        raise FleetHTTPError(400, f"Invalid params: {exc}", param="params") from None


def infer_reply(body: InferRequest, chunk: Any) -> JSONResponse:
    """The engine's chat response as the unified call's answer."""
    error = getattr(chunk, "error", None)
    if error is not None:  # the engine refused the request (an ErrorResponse): its status and message
        code = int(getattr(error, "code", 500) or 500)
        raise FleetHTTPError(
            code, str(getattr(error, "message", error)), type=str(getattr(error, "type", ""))
        )
    if not isinstance(chunk, ChatCompletionResponse):
        raise FleetHTTPError(500, f"Unexpected engine reply: {type(chunk).__name__}")
    choice = chunk.choices[0]
    text = choice.message.content or ""
    return JSONResponse({"text": text, "model_id": body.model_id, "finish_reason": choice.finish_reason})
