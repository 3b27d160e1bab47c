"""A tiny stand-in for vLLM behind Ray Serve LLM's engine seam, for testing the serving logic in seconds.

Ray Serve LLM's ``LLMServer`` builds its engine from the class named by the environment variable
``RAYLLM_VLLM_ENGINE_CLS`` (``LLMServer._get_default_engine_class``; Ray calls it "for testing or escape-hatch
for patching purposes"). Ray ships no mock engine in its wheel, so this is one: every replica of a model's
server started with ``ENGINE_CLS_ENV=ENGINE_CLS`` in its environment runs ``FakeEngine`` instead of vLLM,
and everything around the engine is the fleet's real code: FleetLLMServer (adapters through its loader,
stream batching, one-line errors), the ingresses, the router, the front doors.

The engine answers like vLLM's OpenAI layer (the same response types, streams as ``data: {json}`` events
ending in ``data: [DONE]``, refusals as ``ErrorResponse``), and says who answered: its reply text is
``key=value`` words (see ``FakeEngine.identity``), one "token" each, padded to ``max_tokens``. A prompt that
contains one of the trigger phrases below makes it fail the way an engine can.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from ray import serve
from ray.llm._internal.serve.constants import RAYLLM_VLLM_ENGINE_CLS_ENV
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig, LLMConfig
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionResponse,
    CompletionResponse,
    EmbeddingResponse,
    ErrorInfo,
    ErrorResponse,
)
from ray.llm._internal.serve.core.engine.protocol import LLMEngine
from ray.llm._internal.serve.core.server import llm_server

# Where LLMServer looks for its engine class, and this one's import path.
ENGINE_CLS_ENV = RAYLLM_VLLM_ENGINE_CLS_ENV
ENGINE_CLS = f"{__name__}.FakeEngine"

# Prompts containing these make the engine fail: as vLLM refuses a request it cannot serve (an ErrorResponse
# with a 4xx), with an exception before any output, or with one after the first streamed token.
REFUSE = "fake-engine:refuse"
RAISE = "fake-engine:raise"
RAISE_MID_STREAM = "fake-engine:raise-mid-stream"
REFUSAL_MESSAGE = "The fake engine refuses this prompt"
FAILURE_MESSAGE = "the fake engine broke down"
# Tokens a reply has when the request sets no max_tokens.
DEFAULT_TOKENS = 16
EMBEDDING_SIZE = 8


def identity_of(text: str) -> dict[str, str]:
    """The ``key=value`` words of a reply's text: which engine answered, for which model and adapter."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


class FakeEngine(LLMEngine):
    def __init__(self, llm_config: LLMConfig) -> None:
        self._llm_config = llm_config
        self.model_id: str = llm_config.model_id
        self.loras: dict[str, str] = {}  # adapter name -> its folder, as LLMServer resolved it
        self.started = False

    async def start(self) -> None:
        # LLMServer reports each engine start to Ray Serve LLM's usage telemetry, a detached actor it creates
        # on first use: one more process importing vLLM (~1 GB, ~10 s of CPU), which LLMServer's start then
        # waits for. Nothing of the fleet's logic is in it; this replica's reports go nowhere.
        llm_server.push_telemetry_report_for_all_models = _no_telemetry
        self.started = True

    def routing_stats(self) -> dict[str, Any]:
        return {}

    async def check_health(self) -> None:
        return None

    async def reset_prefix_cache(self) -> None:
        return None

    async def resolve_lora(self, lora_model: DiskMultiplexConfig) -> None:
        self.loras[lora_model.model_id] = lora_model.local_path

    # What it answers.

    def identity(self, model: str) -> list[str]:
        """Who answers a request for ``model``: this engine's model, the name the request carried, the adapter
        the engine would run it with (vLLM picks a loaded LoRA by the request's model name), the adapter Serve
        routed it for (the multiplexed model id), and the replica's process."""
        return [
            f"engine={self.model_id}",
            f"model={model}",
            f"lora={model if model in self.loras else '-'}",
            f"multiplexed={serve.get_multiplexed_model_id() or '-'}",
            f"pid={os.getpid()}",
        ]

    def _tokens(self, model: str, max_tokens: int | None) -> tuple[list[str], str]:
        """The reply's tokens and finish reason: the identity words, padded or cut to ``max_tokens``."""
        words = self.identity(model)
        limit = max_tokens if max_tokens is not None else DEFAULT_TOKENS
        words += [f"w{i}" for i in range(len(words), limit)]
        tokens = [word if i == 0 else f" {word}" for i, word in enumerate(words[:limit])]
        return tokens, "length" if max_tokens is not None else "stop"

    def _refusal(self, model: str, prompt: str) -> ErrorResponse | None:
        """What the engine says instead of answering, or raises: a model it does not serve is vLLM's 404."""
        if model != self.model_id and model not in self.loras:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if RAISE in prompt and RAISE_MID_STREAM not in prompt:
            raise RuntimeError(FAILURE_MESSAGE)
        if REFUSE in prompt:
            return _error(400, f"{REFUSAL_MESSAGE} ({model})", "BadRequestError")
        return None

    async def chat(
        self,
        request: Any,
        raw_request_info: Any = None,  # noqa: ARG002 (LLMEngine's interface)
    ) -> AsyncGenerator[Any, None]:
        prompt = " ".join(_text(m.get("content")) for m in request.messages)
        async for item in self._generate(request, prompt, chat=True):
            yield item

    async def completions(
        self,
        request: Any,
        raw_request_info: Any = None,  # noqa: ARG002 (LLMEngine's interface)
    ) -> AsyncGenerator[Any, None]:
        async for item in self._generate(request, _text(request.prompt), chat=False):
            yield item

    async def _generate(self, request: Any, prompt: str, *, chat: bool) -> AsyncGenerator[Any, None]:
        model = request.model or self.model_id  # as vLLM: a request naming no model is for the base model
        refusal = self._refusal(model, prompt)
        if refusal is not None:
            yield refusal
            return
        max_tokens = getattr(request, "max_completion_tokens", None) or request.max_tokens
        tokens, finish = self._tokens(model, max_tokens)
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(tokens),
            "total_tokens": len(prompt.split()) + len(tokens),
        }
        base = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": model,
        }
        if not request.stream:
            text = "".join(tokens)
            if chat:
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
                yield ChatCompletionResponse.model_validate({**base, "choices": [choice], "usage": usage})
            else:
                choice = {"index": 0, "text": text, "finish_reason": finish}
                yield CompletionResponse.model_validate({**base, "choices": [choice], "usage": usage})
            return
        chunk = {**base, "object": "chat.completion.chunk" if chat else "text_completion"}

        def event(choice: dict[str, Any] | None, **extra: Any) -> str:
            return f"data: {json.dumps({**chunk, 'choices': [choice] if choice else [], **extra})}\n\n"

        def part(token: str, finish_reason: str | None = None) -> dict[str, Any]:
            if chat:
                return {"index": 0, "delta": {"content": token}, "finish_reason": finish_reason}
            return {"index": 0, "text": token, "finish_reason": finish_reason}

        if chat:
            yield event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        for index, token in enumerate(tokens):
            yield event(part(token))
            if index == 0 and RAISE_MID_STREAM in prompt:
                raise RuntimeError(FAILURE_MESSAGE)
        yield event(part("", finish))
        options = getattr(request, "stream_options", None)
        if options is not None and getattr(options, "include_usage", False):
            yield event(None, usage=usage)
        yield "data: [DONE]\n\n"

    async def embeddings(
        self,
        request: Any,
        raw_request_info: Any = None,  # noqa: ARG002 (LLMEngine's interface)
    ) -> AsyncGenerator[Any, None]:
        inputs = request.input if isinstance(request.input, list) else [request.input]
        data = [
            {"index": i, "object": "embedding", "embedding": [float(len(_text(x)))] * EMBEDDING_SIZE}
            for i, x in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        yield EmbeddingResponse.model_validate({"model": request.model, "data": data, "usage": usage})

    async def transcriptions(
        self,
        request: Any,
        raw_request_info: Any = None,  # noqa: ARG002 (LLMEngine's interface)
    ) -> AsyncGenerator[Any, None]:
        yield _error(400, f"The fake engine does not transcribe ({request.model})", "BadRequestError")


def _no_telemetry(*_args: Any, **_kwargs: Any) -> None:
    return None


def _error(code: int, message: str, kind: str) -> ErrorResponse:
    return ErrorResponse(error=ErrorInfo(message=message, type=kind, code=code))


def _text(content: Any) -> str:
    """A prompt or message content as plain text (a list of strings or of parts joined; token ids dropped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text(x.get("text") if isinstance(x, dict) else x) for x in content)
    return ""
