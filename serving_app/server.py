"""The model server: Ray Serve LLM's ``LLMServer`` with two changes that matter on our paths.

1. Streaming without a fixed batching delay. Stock ``LLMServer`` collects streamed chunks for 50 ms
   before sending them over the Serve handle, which puts ~50 ms on every time-to-first-token. We
   send a chunk as soon as the engine yields it and coalesce only what queued up meanwhile, so
   under load chunks still travel in batches while an idle server adds no delay.
2. Startup failures in one line. Serve shows the replica constructor's exception in the
   application status; vLLM wraps the root cause in several layers and ANSI-coloured log text. We
   re-raise the root cause as one clean line so the status (and ``kubectl get mf``) is readable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

from ray.serve.llm import LLMServer

from serving_app.errors import ModelStartupError, one_line

T = TypeVar("T")

# Serve deployment name of a model's server inside its application; the router addresses it by
# this name, so it lives in one place.
SERVER_DEPLOYMENT_PREFIX = "LLMServer:"


def server_deployment_name(model: str) -> str:
    return f"{SERVER_DEPLOYMENT_PREFIX}{model}"


async def coalesce(source: AsyncIterator[T]) -> AsyncGenerator[list[T], None]:
    """Yield each item at once, plus whatever else arrived while the consumer was busy."""
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
    try:
        while True:
            batch: list[T] = []
            done, value = await queue.get()
            while True:
                if done:
                    if batch:
                        yield batch
                    if isinstance(value, BaseException):
                        raise value
                    return
                batch.append(value)  # type: ignore[arg-type]
                if queue.empty():
                    break
                done, value = queue.get_nowait()
            yield batch
    finally:
        task.cancel()


class FleetLLMServer(LLMServer):
    # Serve awaits async constructors; LLMServer starts its engine in one.
    async def __init__(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[misc]
        try:
            await super().__init__(*args, **kwargs)
        except Exception as exc:
            raise ModelStartupError(one_line(exc)) from None

    def _batch_output_stream(self, generator: AsyncIterator[T]) -> AsyncGenerator[list[T], None]:
        return coalesce(generator)
