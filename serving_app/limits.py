"""The fleet's per-request limits, enforced by every front door before a model sees the request.

A pure ASGI middleware reads the body once, under a deadline and a size cap, checks the generation limits
of the inference calls, and hands the same bytes on:
- a body larger than ``max_request_bytes`` -> 413 (at once when Content-Length says so);
- a body not complete ``body_timeout_s`` after the headers -> 408 and the connection closed, so a client
  trickling bytes holds a coroutine for a bounded time and never a model replica;
- ``max_tokens`` / ``max_completion_tokens`` / ``n`` above the fleet's limits -> 400 naming the field,
  the value and the limit (OpenAI's error shape);
- ``messages`` that is not a list of objects -> 400 (the engine's validation would fail with a 500);
- an image part of a chat message that no model could read -> 400 naming the part (``media.py``);
- where asked (a model's own server in high-throughput mode), a ``model`` it does not serve -> 404 listing
  the ones it does;
- a request for a model whose task is not the endpoint's (a chat request to an embedding model) -> 400
  naming the model, its task and the endpoint that serves it; a transcription's `model` is a form field
  of its multipart body.
A body that is not JSON (or, for a transcription, not a form) is passed on untouched: the endpoint answers
it with its own 400.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelfleet_contract.args import FrontDoorArgs
from modelfleet_contract.errors import body_too_large, body_too_slow, unknown_model
from modelfleet_contract.tasks import endpoints_text
from serving_app.errors import FleetHTTPError, error_response
from serving_app.media import check_media_parts

# The calls whose bodies carry generation parameters; /v1/infer keeps them under "params".
_GENERATION_PATHS = ("/chat/completions", "/completions", "/infer")
# The task each inference call needs (by the end of its path), and the calls each task answers.
_PATH_TASKS = dict.fromkeys(_GENERATION_PATHS, "generate") | {
    "/embeddings": "embed",
    "/audio/transcriptions": "transcribe",
}
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
# Where the request's `model` (`model_id` for /v1/infer) is left in the ASGI scope's state once read.
REQUESTED_MODEL = "modelfleet.model"


class RequestLimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: FrontDoorArgs,
        known_models: Collection[str] | None = None,
        tasks: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        # Set where the app behind would answer an unknown model without naming the known ones (vLLM's).
        self.known_models = sorted(known_models) if known_models is not None else None
        # Each name served behind this door -> its task; a request without `model` has the task of the
        # names here when they share one (a model's own door).
        self.tasks = dict(tasks or {})
        only = set(self.tasks.values())
        self.default_task = only.pop() if len(only) == 1 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive)
            if body is None:
                return  # the client went away before its body was complete: nobody to answer
            needs = next((task for end, task in _PATH_TASKS.items() if scope["path"].endswith(end)), None)
            if needs == "transcribe":
                self._check_model(scope, await _form_model(scope, body), needs=needs)
            elif needs is not None:
                self._check_inference(scope, body, needs=needs)
        except FleetHTTPError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, read under the size cap and the deadline; None when the client disconnected."""
        limit = self.limits.max_request_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise _too_large(limit, declared)
        deadline = time.monotonic() + self.limits.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise FleetHTTPError(
                    408, body_too_slow(self.limits.body_timeout_s, size), headers={"Connection": "close"}
                ) from None
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check_inference(self, scope: Scope, body: bytes, *, needs: str) -> None:
        try:
            document: Any = json.loads(body)
        except ValueError:
            return  # not JSON: the endpoint's own 400 says so
        if not isinstance(document, dict):
            return
        infer = scope["path"].endswith("/infer")
        self._check_model(scope, document.get("model_id" if infer else "model"), needs=needs)
        if needs == "generate":
            self._check_generation(document, infer=infer)

    def _check_model(self, scope: Scope, model: Any, *, needs: str) -> None:
        """The requested model (a JSON field, or a transcription's form field): served here, of the task
        the call needs."""
        if isinstance(model, str):
            if self.known_models is not None and model not in self.known_models:
                raise FleetHTTPError(404, unknown_model(model, self.known_models), param="model")
            # For the layers inside (server.py's AdapterMiddleware), so none parses the body again.
            scope.setdefault("state", {})[REQUESTED_MODEL] = model
        task = self.tasks.get(model) if isinstance(model, str) else self.default_task
        if task is not None and task != needs:
            name = f"'{model}'" if isinstance(model, str) else "This model"
            raise FleetHTTPError(
                400,
                f"{name} has task '{task}' and answers {endpoints_text(task)}; {scope['path']} needs a "
                f"model with task '{needs}'.",
                param="model",
            )

    def _check_generation(self, document: dict[str, Any], *, infer: bool) -> None:
        _check_shape(document)
        check_media_parts(document)
        # /v1/infer keeps its parameters under "params"; elsewhere a "params" key is just an unknown field.
        params = document.get("params") if infer else document
        if not isinstance(params, dict):
            return
        for name in _TOKEN_FIELDS:
            _at_most(params, name, self.limits.max_tokens, "limits.maxTokens")
        _at_most(params, "n", self.limits.max_n, "limits.maxN")


def _check_shape(document: dict[str, Any]) -> None:
    """`messages` must be a list of objects: vLLM's request model iterates it in a "before" validator, so
    another type raised TypeError there, which Ray Serve LLM answered with a 500 (found by test_fuzz.py)."""
    messages = document.get("messages")
    if "messages" in document and not (
        isinstance(messages, list) and all(isinstance(m, dict) for m in messages)
    ):
        raise FleetHTTPError(
            400,
            f"messages must be a list of message objects, got {type(messages).__name__}",
            param="messages",
        )


def _at_most(params: dict[str, Any], name: str, limit: int, setting: str) -> None:
    value = params.get(name)
    if _number(value) > limit:
        raise FleetHTTPError(
            400, f"{name} is {value}, above this fleet's limit of {limit} ({setting}).", param=name
        )


def _number(value: Any) -> float:
    """The value the endpoint's (lenient) validation would see: 5, 5.0 and "5" alike; else -inf."""
    if isinstance(value, bool):
        return float("-inf")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return float("-inf")
    return float("-inf")


async def _form_model(scope: Scope, body: bytes) -> str | None:
    """The `model` field of a multipart form body (a transcription's); None when there is none or the body is
    no form (the endpoint refuses it)."""

    async def nothing_more() -> Message:
        return {"type": "http.disconnect"}

    try:
        form = await Request(scope, _replay(body, nothing_more)).form()
    except Exception:  # a malformed form is the endpoint's to refuse, with its own message
        return None
    try:
        model = form.get("model")
        return model if isinstance(model, str) else None
    finally:
        await form.close()


def _too_large(limit: int, size: int) -> FleetHTTPError:
    return FleetHTTPError(413, body_too_large(limit, size), headers={"Connection": "close"})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out the body once, then the client's own messages (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
