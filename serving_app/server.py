"""The model server: Ray Serve LLM's ``LLMServer`` with two changes that matter on our paths.

1. Streaming without a fixed delay on the first token. Stock ``LLMServer`` collects streamed chunks
   for 50 ms before sending them over the Serve handle, which puts ~50 ms on every time-to-first-token.
   We send the first chunk as soon as the engine yields it, then batch the rest in 20 ms windows: one
   message per token would cost ~1 ms of CPU per token and hop (measured, docs/benchmarks.md).
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


class FleetLLMServer(LLMServer):
    # Serve awaits async constructors; LLMServer starts its engine in one.
    async def __init__(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[misc]
        try:
            await super().__init__(*args, **kwargs)
        except Exception as exc:
            raise ModelStartupError(one_line(exc)) from None

    def _batch_output_stream(self, generator: AsyncIterator[T]) -> AsyncGenerator[list[T], None]:
        return coalesce(generator)
