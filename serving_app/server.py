"""The model server: Ray Serve LLM's ``LLMServer`` with two changes that matter on our paths.

1. Streaming without a fixed delay on the first token. Stock ``LLMServer`` collects streamed chunks
   for 50 ms before sending them over the Serve handle, which puts ~50 ms on every time-to-first-token.
   We send the first chunk as soon as the engine yields it, then batch the rest in 20 ms windows: one
   message per token would cost ~1 ms of CPU per token and hop (measured, docs/benchmarks.md).
2. In Ray's high-throughput mode (direct streaming) the server is itself the model's HTTP ingress: HAProxy
   sends the model's prefix straight to vLLM's own OpenAI app inside this replica (no Serve proxy, no
   ingress hop). We add the fleet's surface to that app: Bearer auth, request limits, ``/healthz`` and
   ``/v1/infer``.
3. Startup failures in one line. Serve shows the replica constructor's exception in the
   application status; vLLM wraps the root cause in several layers and ANSI-coloured log text. We
   re-raise the root cause as one clean line so the status (and ``kubectl get mf``) is readable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException
from ray import serve
from ray.serve.llm import LLMServer
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from modelfleet_contract.args import FrontDoorArgs
from modelfleet_contract.errors import unknown_model
from serving_app.adapters import adapter_loader, model_card
from serving_app.errors import FleetHTTPError, ModelStartupError, error_response, handle_fleet_error, one_line
from serving_app.frontdoor import add_front_door
from serving_app.infer import InferRequest, chat_request, infer_reply
from serving_app.limits import REQUESTED_MODEL

T = TypeVar("T")
# What a model's own server answers in high-throughput mode: the same surface as its ingress on the
# standard path (serving_app/ingress.py ENDPOINTS).
PUBLIC_PATHS = frozenset(
    {
        "/v1/models",
        "/v1/models/{name:path}",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/audio/transcriptions",
        "/v1/infer",
        "/healthz",
    }
)

# Serve deployment name of a model's server inside its application; the router addresses it by
# this name, so it lives in one place.
SERVER_DEPLOYMENT_PREFIX = "LLMServer:"


def server_deployment_name(model: str) -> str:
    return f"{SERVER_DEPLOYMENT_PREFIX}{model}"


# After the first chunk, chunks travel in batches at most this old: one Serve message per batch instead of
# per token (each message costs ~1 ms of CPU per hop), without the fixed delay on the first token that
# stock LLMServer's 50 ms batching puts on every TTFT.
BATCH_INTERVAL_S = 0.02


async def coalesce(
    source: AsyncIterator[T], interval_s: float = BATCH_INTERVAL_S
) -> AsyncGenerator[list[T], None]:
    """Yield the first item at once; after it, batches of whatever arrives within `interval_s`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bool, T | BaseException | None]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait((False, item))
        except BaseException as exc:  # handed to the consumer, re-raised there
            queue.put_nowait((True, exc))
            return
        queue.put_nowait((True, None))

    task = asyncio.create_task(pump())
    window = 0.0  # the first batch goes out as soon as it exists
    try:
        while True:
            batch: list[T] = []
            done, value = await queue.get()
            deadline = loop.time() + window
            window = interval_s
            while not done:
                batch.append(value)  # type: ignore[arg-type]
                remaining = deadline - loop.time()
                if remaining <= 0 and queue.empty():
                    break
                try:
                    done, value = (
                        queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(queue.get(), remaining)
                    )
                except TimeoutError:
                    break
            if batch:
                yield batch
            if done:
                if isinstance(value, BaseException):
                    raise value
                return
    finally:
        task.cancel()


class AdapterMiddleware:
    """High-throughput mode: loads the adapter a request names before vLLM's app serves it. Sits inside the
    front door, whose limits layer has read the body and left the requested model in the scope's state."""

    def __init__(self, app: ASGIApp, *, server: FleetLLMServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        adapter = scope.get("state", {}).get(REQUESTED_MODEL)
        if adapter in self.server._adapters:
            try:
                await self.server.load_adapter(adapter)
            except HTTPException as exc:
                error = FleetHTTPError(exc.status_code, str(exc.detail), type="server_error", param="model")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class FleetLLMServer(LLMServer):
    # Serve awaits async constructors; LLMServer starts its engine in one.
    async def __init__(  # type: ignore[misc]
        self,
        *args: Any,
        front_door: FrontDoorArgs | None = None,
        adapters: dict[str, str] | None = None,
        task: str = "generate",
        **kwargs: Any,
    ) -> None:
        self._front_door = front_door
        self._adapters = dict(adapters or {})
        self._task = task
        try:
            # Ray types the hook as its own LoRA loader; ours has its interface (test_ray_private_api.py).
            loader: Any = adapter_loader(self._adapters)
            await super().__init__(*args, model_downloader=loader, **kwargs)
        except Exception as exc:
            raise ModelStartupError(one_line(exc)) from None

    async def __serve_build_asgi_app__(self) -> FastAPI:
        """Direct streaming only: vLLM's OpenAI app (built by Ray after the engine started) plus ours."""
        app: FastAPI = await super().__serve_build_asgi_app__()  # type: ignore[no-untyped-call]  # Ray's, unannotated

        async def infer(body: InferRequest) -> Response:
            # One of this model's adapters by name (loaded by AdapterMiddleware), else the model itself.
            adapter = body.model_id in self._adapters
            request = chat_request(body, model=body.model_id if adapter else self._llm_config.model_id)
            async for chunk in await self.chat(request):
                return infer_reply(body, chunk)
            raise FleetHTTPError(500, "The engine returned no reply")

        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        model = self._llm_config.model_id
        cards = [model_card(model)] + [model_card(a, parent=model) for a in sorted(self._adapters)]

        async def models() -> dict[str, Any]:
            return {"object": "list", "data": cards}

        async def model_data(name: str) -> dict[str, Any]:
            for card in cards:
                if card["id"] == name:
                    return card
            raise FleetHTTPError(404, unknown_model(name, [model, *self._adapters]), param="model")

        # The fleet's surface only, as on the standard path: vLLM's app also serves /v1/responses,
        # /v1/messages, /inference/v1/generate, tokenizer and admin routes, which the fleet's limits and docs
        # do not cover. (Serve's replica answers its own health checks before the app.) vLLM's /v1/models
        # lists only the adapters loaded on this replica: ours lists them all, as the standard path does.
        ours: dict[str, tuple[Callable[..., Any], str]] = {
            "/v1/infer": (infer, "POST"),
            "/healthz": (healthz, "GET"),
            "/v1/models": (models, "GET"),
            "/v1/models/{name:path}": (model_data, "GET"),
        }
        app.router.routes = [
            r
            for r in app.router.routes
            if getattr(r, "path", None) in PUBLIC_PATHS
            and not getattr(r, "path", "").startswith("/v1/models")
        ]
        for path, (endpoint, method) in ours.items():
            app.add_api_route(path, endpoint, methods=[method])
        app.add_exception_handler(FleetHTTPError, handle_fleet_error)
        # Set in high-throughput mode only, where this server is its application's front door.
        assert self._front_door is not None, "direct streaming needs the front door's args"
        # Inside the front door (after auth and limits): load the adapter the request names, since HAProxy
        # routes without reading the body.
        if self._adapters:
            app.middleware_stack = None  # vLLM built its stack eagerly; Starlette rebuilds it lazily
            app.add_middleware(AdapterMiddleware, server=self)
        add_front_door(
            app,
            self._front_door,
            endpoint="prefix",
            model=model,
            known_models=[model, *self._adapters],
            tasks={model: self._task} | dict.fromkeys(self._adapters, "generate"),
        )
        return app

    async def _maybe_resolve_lora_from_multiplex(self) -> None:
        """A call through a Serve handle names its adapter as its multiplexed model id (see ingress.py)."""
        adapter = serve.get_multiplexed_model_id()
        if adapter:
            await self.load_adapter(adapter)

    async def load_adapter(self, adapter: str) -> None:
        """Loads ``adapter`` on this replica (once; Serve's multiplexing keeps at most maxAdaptersPerReplica,
        least recently used out). One that cannot be loaded fails its own request with one line naming it and
        its source; the replica, the model and its other adapters keep serving. (Ray Serve LLM would answer
        with the loader's or vLLM's traceback.)"""
        try:
            await self.engine.resolve_lora(await self._load_model(adapter))  # type: ignore[union-attr]
        except HTTPException:
            raise
        except Exception as exc:
            source = self._adapters.get(adapter, "")
            reason = one_line(exc)
            where = "" if source in reason else f" from '{source}'"
            raise HTTPException(
                500, f"The adapter '{adapter}' could not be loaded{where}: {reason}"
            ) from None

    def _batch_output_stream(self, generator: AsyncIterator[T]) -> AsyncGenerator[list[T], None]:
        return coalesce(generator)
