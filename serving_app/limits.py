"""The fleet's per-request limits, enforced by every front door before a model sees the request.

A pure ASGI middleware reads the body once, under a deadline and a size cap, checks the generation limits
of the inference calls, and hands the same bytes on:
- a body larger than ``max_request_bytes`` -> 413 (at once when Content-Length says so);
- a body not complete ``body_timeout_s`` after the headers -> 408 and the connection closed, so a client
  trickling bytes holds a coroutine for a bounded time and never a model replica;
- ``max_tokens`` / ``max_completion_tokens`` / ``n`` / ``best_of`` above the fleet's limits -> 400 naming
  the field, the value and the limit (OpenAI's error shape); a generation request naming neither token
  field gets ``max_tokens`` set to the fleet's limit, so a client that leaves it out (or asks for
  ``ignore_eos``) still stops there; ``min_tokens`` above the request's ``max_tokens`` and any
  ``prompt_logprobs`` (a score for every prompt token) -> 400;
- a ``prompt`` or embeddings ``input`` list longer than ``max_batch_items`` -> 400;
- a JSON body nested deeper than ``MAX_JSON_DEPTH`` -> 400 naming the body (Python's parser would raise
  RecursionError on a deep enough one, a 500);
- ``messages`` that is not a list of objects -> 400 (the engine's validation would fail with a 500);
- a media part of a chat message that no model could read, or whose URL points inside the cluster -> 400
  naming the part (``media.py``);
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
import re
import time
from collections.abc import Collection, Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelfleet_contract.args import FrontDoorArgs
from modelfleet_contract.errors import body_too_large, body_too_slow, unknown_model
from modelfleet_contract.tasks import endpoints_text
from serving_app.errors import FleetHTTPError, error_response
from serving_app.media import check_fetched_hosts, check_media_parts

# The calls whose bodies carry generation parameters; /v1/infer keeps them under "params".
_GENERATION_PATHS = ("/chat/completions", "/completions", "/infer")
# The task each inference call needs (by the end of its path), and the calls each task answers.
_PATH_TASKS = dict.fromkeys(_GENERATION_PATHS, "generate") | {
    "/embeddings": "embed",
    "/audio/transcriptions": "transcribe",
}
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
# The fields that list several inputs in one request (completions' prompts, embeddings' inputs).
_BATCH_FIELDS = ("prompt", "input")
# How deep a request body's JSON may nest. OpenAI's bodies, tool and response schemas included, stay far
# below; Python's own parser gives up (RecursionError) near 1000.
MAX_JSON_DEPTH = 64
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
                body, fetched = self._check_inference(scope, body, needs=needs)
                await check_fetched_hosts(fetched, self.limits.media_hosts)
            else:
                _check_depth(body)  # any other call: its depth bounded too, nothing parsed
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

    def _check_inference(
        self, scope: Scope, body: bytes, *, needs: str
    ) -> tuple[bytes, list[tuple[str, str]]]:
        """`body` checked: the body to hand on (the same bytes, or with `max_tokens` filled in), and the
        (part, URL) of the media the engine would fetch."""
        document = _parse(body)
        if not isinstance(document, dict):
            return body, []  # not JSON, or not an object: the endpoint's own 400 says so
        infer = scope["path"].endswith("/infer")
        self._check_model(scope, document.get("model_id" if infer else "model"), needs=needs)
        for name in _BATCH_FIELDS:
            _at_most_items(document, name, self.limits.max_batch_items)
        if needs != "generate":
            return body, []
        _check_shape(document)
        fetched = check_media_parts(document)
        if not self._check_generation(document, infer=infer):
            return body, fetched
        filled = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        _set_content_length(scope, len(filled))
        return filled, fetched

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

    def _check_generation(self, document: dict[str, Any], *, infer: bool) -> bool:
        """The generation limits checked; True when `max_tokens` was filled in (`document` changed)."""
        # /v1/infer keeps its parameters under "params"; elsewhere a "params" key is just an unknown field.
        if infer and "params" not in document:
            document["params"] = {}
        params = document.get("params") if infer else document
        if not isinstance(params, dict):
            return False  # the endpoint's own validation refuses it
        for name in _TOKEN_FIELDS:
            _at_most(params, name, self.limits.max_tokens, "limits.maxTokens")
        _at_most(params, "n", self.limits.max_n, "limits.maxN")
        _at_most(params, "best_of", self.limits.max_n, "limits.maxN")
        if params.get("prompt_logprobs") is not None:
            raise FleetHTTPError(
                400,
                f"prompt_logprobs is {params['prompt_logprobs']!r}; this fleet does not score prompt tokens "
                "(prompt_logprobs must be absent or null).",
                param="prompt_logprobs",
            )
        asked = [_number(params.get(name)) for name in _TOKEN_FIELDS if params.get(name) is not None]
        filled = not asked
        if filled:
            params["max_tokens"] = self.limits.max_tokens
        ceiling = min(asked, default=float(self.limits.max_tokens))
        if _number(params.get("min_tokens")) > ceiling:
            raise FleetHTTPError(
                400,
                f"min_tokens is {params['min_tokens']}, above the request's max_tokens of {ceiling:g}"
                + (" (limits.maxTokens, which applies when max_tokens is absent)." if filled else "."),
                param="min_tokens",
            )
        return filled


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


def _parse(body: bytes) -> Any:
    """The body as JSON; None when it is not JSON (the endpoint refuses it in its own words); 400 when its
    lists and objects nest deeper than MAX_JSON_DEPTH, valid JSON or not (a parser that recurses would fail
    on it with a RecursionError, a 500)."""
    _check_depth(body)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _check_depth(body: bytes) -> None:
    """400 when the body's brackets nest deeper than MAX_JSON_DEPTH."""
    # Fewer brackets than the bound cannot nest past it: most bodies skip the count.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _depth(body) > MAX_JSON_DEPTH:
        raise _too_deep()


# A JSON string (its brackets are text, not nesting), and a bracket outside one.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def _depth(body: bytes) -> int:
    """How deep the brackets of `body` nest, strings aside: a count over the brackets alone."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if match[0] in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _too_deep() -> FleetHTTPError:
    return FleetHTTPError(
        400, f"The request body nests lists and objects more than {MAX_JSON_DEPTH} levels deep.", param="body"
    )


def _at_most_items(document: dict[str, Any], name: str, limit: int) -> None:
    """A list of inputs (`prompt`, `input`) holds at most `limit` of them. A list of token ids is one
    input; a list of strings or of token-id lists is one per entry."""
    value = document.get(name)
    if not isinstance(value, list) or all(isinstance(item, int) for item in value):
        return
    if len(value) > limit:
        raise FleetHTTPError(
            400,
            f"{name} lists {len(value)} inputs, above this fleet's limit of {limit} (limits.maxBatchItems).",
            param=name,
        )


def _set_content_length(scope: Scope, length: int) -> None:
    """The request's Content-Length header (the app behind reads the body by it) set to `length`."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
    scope["headers"] = [*headers, (b"content-length", str(length).encode())]


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
