"""The model server's stream batching: the first chunk at once, then batches per time window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from serving_app.server import coalesce


async def tokens(gaps: list[float]) -> AsyncIterator[int]:
    for index, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield index


async def collect(source: AsyncIterator[int], interval_s: float) -> list[tuple[float, list[int]]]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    return [(loop.time() - started, batch) async for batch in coalesce(source, interval_s)]


def test_first_chunk_is_not_delayed_and_the_rest_is_batched() -> None:
    batches = asyncio.run(collect(tokens([0.0] + [0.005] * 20), interval_s=0.05))
    first_at, first = batches[0]
    assert first == [0] and first_at < 0.04, "the first token must not wait for a batching window"
    assert [item for _, batch in batches for item in batch] == list(range(21)), "nothing lost or reordered"
    assert len(batches) <= 6, f"tokens 5 ms apart should travel in ~50 ms batches, got {len(batches)}"


def test_errors_reach_the_consumer_after_the_items_before_them() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("engine died")

    async def run() -> tuple[list[list[int]], str]:
        got: list[list[int]] = []
        try:
            async for batch in coalesce(failing(), 0.01):
                got.append(batch)
        except RuntimeError as error:
            return got, str(error)
        return got, "no error"

    assert asyncio.run(run()) == ([[1]], "engine died")
